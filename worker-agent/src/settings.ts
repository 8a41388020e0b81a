// Every agent setting once: its environment name, default, parser and help line. config.ts parses from this table,
// `lora-router agent --help` prints it (SETTINGS_HELP), and README / agent.env.sample list the same names.
import { z } from 'zod';
import { DEFAULT_POOL } from '../../contract/ids.js';
import { parseBytes } from './env-file.js';

export interface SettingSpec {
  /** The environment variable. */
  name: string;
  help: string;
  /** Raw value used when the variable is unset (parsed like a set value); shown in the help. */
  default?: string;
  /** Shown instead of the default in the help, e.g. "required" or where the value otherwise comes from. */
  note?: string;
  /** Only read for this dispatch transport. */
  transport?: 'servicebus' | 'storage-queue';
  /** Parses the raw (trimmed, non-empty) value. Settings without one are read by their own code in config.ts. */
  parse?: z.ZodType;
}

const seconds = (min: number, max: number) => z.coerce.number().min(min).max(max);

const bytes = z.string().transform((v, ctx) => {
  const n = parseBytes(v);
  if (n === undefined) ctx.addIssue({ code: 'custom', message: 'expected bytes or a size such as 50GB or 300MB' });
  return n ?? 0;
});

export const SETTINGS = {
  api: {
    name: 'LORA_ROUTER_API',
    help: 'API base URL, e.g. https://<app host>/api',
    note: 'required',
    parse: z.string().url('must be the API base URL, e.g. https://func-api-xxxx.azurewebsites.net/api'),
  },
  machineId: {
    name: 'MACHINE_ID',
    help: "this machine's registered id",
    note: 'required',
    parse: z.string().regex(/^[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){1,46}$/, 'must be 2-47 chars of a-z, 0-9 and single hyphens (as registered)'),
  },
  machineTokenFile: { name: 'MACHINE_TOKEN_FILE', help: 'file holding the machine token; or systemd LoadCredential=machine-token:<path>' },
  machineToken: { name: 'MACHINE_TOKEN', help: 'the machine token itself (development only)' },
  pool: {
    name: 'POOL',
    help: 'pool registered for this machine',
    default: DEFAULT_POOL,
    parse: z.string().regex(/^[a-z][a-z0-9-]{0,31}$/, 'must be a lower-case pool name such as standard'),
  },
  slots: { name: 'SLOTS', help: 'jobs run at once', default: '1', parse: z.coerce.number().int().min(1).max(64) },
  queueDepth: {
    name: 'QUEUE_DEPTH',
    help: 'dispatches taken beyond SLOTS: their LoRAs download while the slots are busy',
    default: '0',
    parse: z.coerce.number().int().min(0).max(8),
  },
  queueWaitLimit: {
    name: 'QUEUE_WAIT_LIMIT_SECONDS',
    help: 'a queued dispatch not started this long after its claim is handed back to run elsewhere; auto = 2 × the mean of recent runs (≥ 10 s), 0 = never',
    default: 'auto',
    parse: z.union([z.literal('auto'), seconds(0, 86_400)], { error: () => 'must be auto or seconds from 0 (never) to 86400' }),
  },
  prewarmHintMinIdleSeconds: {
    name: 'PREWARM_HINT_MIN_IDLE_SECONDS',
    help: 'a scheduler pre-warm hint may evict only LoRAs unused this long (else it is declined)',
    default: '1800',
    parse: seconds(0, 30 * 86_400),
  },
  cacheDir: { name: 'CACHE_DIR', help: 'LoRA cache directory', note: 'required, or $CACHE_DIRECTORY' },
  cacheBudget: { name: 'CACHE_BUDGET', help: 'cache size: bytes or 50GB / 300MB (binary units)', default: '50GB', parse: bytes },
  cacheTtlDays: { name: 'CACHE_TTL_DAYS', help: 'delete LoRAs unused this long', default: '7', parse: seconds(0.000001, 3650) },
  cacheDiskReserve: {
    name: 'CACHE_DISK_RESERVE',
    help: 'free disk a download must leave on the cache file system; short → evict unused LoRAs, else the machine reports disk full',
    default: '1GB',
    parse: bytes,
  },
  pinnedLoras: { name: 'PINNED_LORAS', help: 'comma list of shared LoRA file names never evicted' },
  stateDir: { name: 'STATE_DIR', help: 'run dirs + outcome outbox', note: '$STATE_DIRECTORY, else CACHE_DIR/agent-state' },
  executor: { name: 'EXECUTOR', help: 'how jobs run: command | comfyui', default: 'command', parse: z.enum(['command', 'comfyui']) },
  executorCommand: { name: 'EXECUTOR_COMMAND', help: 'program + args, JSON array or words (no shell)', note: 'required for command' },
  executorArgs: { name: 'EXECUTOR_ARGS', help: 'extra args, JSON array' },
  executorUser: {
    name: 'EXECUTOR_USER',
    help: 'unprivileged user the command executor runs jobs as (the agent needs CAP_SETUID/SETGID/KILL/CHOWN)',
    note: 'required for command unless EXECUTOR_TRUSTED_SAME_USER=true',
  },
  executorTrustedSameUser: {
    name: 'EXECUTOR_TRUSTED_SAME_USER',
    help: "trusted single-tenant box: run jobs as the agent's own user (local stack, tests)",
    default: 'false',
    parse: z.enum(['true', 'false', '1', '0', 'yes', 'no']).transform((v) => ['true', '1', 'yes'].includes(v)),
  },
  comfyUiUrl: {
    name: 'COMFYUI_URL',
    help: "ComfyUI's base URL (EXECUTOR=comfyui)",
    default: 'http://127.0.0.1:8188',
    parse: z.string().regex(/^https?:\/\/[^\s/]+(\/.*)?$/, "must be ComfyUI's base URL, e.g. http://127.0.0.1:8188"),
  },
  comfyUiLoraDir: { name: 'COMFYUI_LORA_DIR', help: "ComfyUI's models/loras folder; runs link their LoRAs below it", note: 'required for comfyui' },
  comfyUiStallSeconds: {
    name: 'COMFYUI_STALL_SECONDS',
    help: 'no ComfyUI message this long → the attempt fails, retryable',
    default: '300',
    parse: seconds(1, 86_400),
  },
  executorMaxRunSeconds: {
    name: 'EXECUTOR_MAX_RUN_SECONDS',
    help: 'a job running longer is stopped and failed (every executor)',
    default: '3600',
    parse: seconds(1, 7 * 86_400),
  },
  cancelGraceSeconds: {
    name: 'CANCEL_GRACE_SECONDS',
    help: 'SIGTERM → SIGKILL delay when a job is cancelled',
    default: '10',
    parse: seconds(0, 3600),
  },
  drainGraceSeconds: {
    name: 'DRAIN_GRACE_SECONDS',
    help: 'on SIGTERM, how long running jobs may finish',
    default: '120',
    parse: seconds(0, 86_400),
  },
  heartbeatSeconds: { name: 'HEARTBEAT_SECONDS', help: 'heartbeat interval', default: '5', parse: seconds(0.2, 60) },
  tokenRefusedGraceSeconds: {
    name: 'TOKEN_REFUSED_GRACE_SECONDS',
    help: 'after a 401, how long the token file is re-read for a new token before the agent exits 78',
    default: '120',
    parse: seconds(0, 3600),
  },
  ttlSweepMinutes: { name: 'TTL_SWEEP_MINUTES', help: 'cache TTL sweep interval', default: '60', parse: seconds(0.01, 24 * 60) },
  lockRenewSeconds: {
    name: 'LOCK_RENEW_SECONDS',
    help: 'dispatch message lock renewal interval',
    default: '20',
    parse: seconds(0.5, 3600),
  },
  keepRunDirs: {
    name: 'KEEP_RUN_DIRS',
    help: "keep each run's job file and output dir",
    default: 'false',
    parse: z.enum(['true', 'false', '1', '0', 'yes', 'no']).transform((v) => ['true', '1', 'yes'].includes(v)),
  },
  logLevel: {
    name: 'LOG_LEVEL',
    help: 'pino level',
    default: 'info',
    parse: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']),
  },
  transport: {
    name: 'DISPATCH_TRANSPORT',
    help: 'servicebus | storage-queue',
    default: 'servicebus',
    parse: z.enum(['storage-queue', 'servicebus']),
  },
  serviceBusNamespace: { name: 'ServiceBus__fullyQualifiedNamespace', help: 'namespace host (managed identity)', transport: 'servicebus' },
  serviceBusClientId: { name: 'ServiceBus__clientId', help: 'user-assigned identity client id', transport: 'servicebus' },
  serviceBusConnection: { name: 'ServiceBus', help: 'connection string, instead of the namespace', transport: 'servicebus' },
  serviceBusQueue: {
    name: 'SERVICEBUS_QUEUE',
    help: 'dispatch queue',
    default: 'jobs',
    transport: 'servicebus',
    parse: z.string().min(1),
  },
  storageQueueServiceUri: { name: 'LoraStorage__queueServiceUri', help: 'queue service URL (managed identity)', transport: 'storage-queue' },
  storageClientId: { name: 'LoraStorage__clientId', help: 'user-assigned identity client id', transport: 'storage-queue' },
  storageConnection: { name: 'LoraStorage', help: 'connection string, instead of the URL (local)', transport: 'storage-queue' },
  storageQueuePrefix: {
    name: 'DISPATCH_QUEUE_PREFIX',
    help: "per-machine queue name prefix",
    default: 'machine-',
    transport: 'storage-queue',
    parse: z.string().regex(/^[a-z0-9-]{1,15}$/, 'must be 1-15 chars of a-z, 0-9 and hyphens'),
  },
  // How an identity-based transport logs in (worker-agent/src/identity.ts; docs/agent-runbook.md "Logging in to Azure").
  azureCredential: {
    name: 'AZURE_CREDENTIAL',
    help: 'identity login for the transport: managed-identity | arc | certificate | workload-identity | default',
    note: 'managed-identity if a client id is set, else default',
  },
  azureTenantId: { name: 'AZURE_TENANT_ID', help: 'tenant (certificate, workload-identity)' },
  azureClientId: { name: 'AZURE_CLIENT_ID', help: 'client id (managed-identity, certificate, workload-identity); else the transport clientId' },
  azureClientCertificatePath: {
    name: 'AZURE_CLIENT_CERTIFICATE_PATH',
    help: 'PEM certificate + key (certificate)',
    note: 'or LoadCredential=azure-client-certificate:<path>',
  },
  azureFederatedTokenFile: { name: 'AZURE_FEDERATED_TOKEN_FILE', help: 'OIDC token file kept fresh by its issuer (workload-identity)' },
  azureAuthorityHost: { name: 'AZURE_AUTHORITY_HOST', help: 'sovereign clouds', note: 'https://login.microsoftonline.com' },
  dispatchLockSeconds: {
    name: 'DISPATCH_LOCK_SECONDS',
    help: 'visibility timeout per renewal',
    default: '60',
    transport: 'storage-queue',
    parse: z.coerce.number().int().min(5).max(7 * 24 * 3600),
  },
  simulateSessionBusyFile: {
    name: 'DISPATCH_SIMULATE_SESSION_BUSY_FILE',
    help: 'tests/demos: while this file exists, act as if another receiver held the session',
    transport: 'storage-queue',
  },
} as const satisfies Record<string, SettingSpec>;

export type SettingKey = keyof typeof SETTINGS;

/** key → environment name, for code that writes an agent's environment (local/agents.ts). */
export const AGENT_SETTINGS = Object.fromEntries(Object.entries(SETTINGS).map(([k, s]) => [k, s.name])) as {
  [K in SettingKey]: (typeof SETTINGS)[K]['name'];
};

function helpText(): string {
  const specs: SettingSpec[] = Object.values(SETTINGS);
  const width = Math.max(...specs.map((s) => s.name.length + (s.transport ? 4 : 2))) + 2;
  const line = (s: SettingSpec, indent: string): string => {
    const tail = s.note ?? s.default;
    return `${(indent + s.name).padEnd(width)}${s.help}${tail ? ` (${tail})` : ''}`;
  };
  const out = ['', 'Settings (environment or --env-file; the environment wins):'];
  for (const s of specs) if (!s.transport) out.push(line(s, '  '));
  for (const transport of ['servicebus', 'storage-queue'] as const) {
    out.push(`  with DISPATCH_TRANSPORT=${transport}:`);
    for (const s of specs) if (s.transport === transport) out.push(line(s, '    '));
  }
  return `${out.join('\n')}\n`;
}

/** Help text for `lora-router agent --help`, generated from SETTINGS. */
export const SETTINGS_HELP = helpText();

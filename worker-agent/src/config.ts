// The agent's settings: one typed, validated object read from the environment and, optionally, an env file
// (`lora-router agent --env-file /etc/lora-router/agent.env`). The process environment wins over the file, like
// `node --env-file` and dotenv. A bad or missing setting stops startup with a message that names it.
//
// The machine token never has to live in the environment: MACHINE_TOKEN_FILE, or systemd's LoadCredential=
// (`$CREDENTIALS_DIRECTORY/machine-token`) are read instead when MACHINE_TOKEN is not set.
import { existsSync, readFileSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import { z } from 'zod';
import { DEFAULT_POOL } from '../../contract/ids.js';

export class AgentConfigError extends Error {
  override readonly name = 'AgentConfigError';
}

/** Setting names in one place (README, agent.env.sample and `lora-router agent --help` list the same). */
export const AGENT_SETTINGS = {
  api: 'LORA_ROUTER_API',
  machineId: 'MACHINE_ID',
  machineToken: 'MACHINE_TOKEN',
  machineTokenFile: 'MACHINE_TOKEN_FILE',
  pool: 'POOL',
  slots: 'SLOTS',
  cacheDir: 'CACHE_DIR',
  cacheBudget: 'CACHE_BUDGET',
  cacheTtlDays: 'CACHE_TTL_DAYS',
  pinnedLoras: 'PINNED_LORAS',
  stateDir: 'STATE_DIR',
  executor: 'EXECUTOR',
  executorCommand: 'EXECUTOR_COMMAND',
  executorArgs: 'EXECUTOR_ARGS',
  comfyUiUrl: 'COMFYUI_URL',
  comfyUiLoraDir: 'COMFYUI_LORA_DIR',
  comfyUiStallSeconds: 'COMFYUI_STALL_SECONDS',
  cancelGraceSeconds: 'CANCEL_GRACE_SECONDS',
  drainGraceSeconds: 'DRAIN_GRACE_SECONDS',
  heartbeatSeconds: 'HEARTBEAT_SECONDS',
  ttlSweepMinutes: 'TTL_SWEEP_MINUTES',
  lockRenewSeconds: 'LOCK_RENEW_SECONDS',
  dispatchLockSeconds: 'DISPATCH_LOCK_SECONDS',
  keepRunDirs: 'KEEP_RUN_DIRS',
  logLevel: 'LOG_LEVEL',
  transport: 'DISPATCH_TRANSPORT',
  storageConnection: 'LoraStorage',
  storageQueueServiceUri: 'LoraStorage__queueServiceUri',
  storageClientId: 'LoraStorage__clientId',
  storageQueuePrefix: 'DISPATCH_QUEUE_PREFIX',
  serviceBusConnection: 'ServiceBus',
  serviceBusNamespace: 'ServiceBus__fullyQualifiedNamespace',
  serviceBusClientId: 'ServiceBus__clientId',
  serviceBusCredential: 'ServiceBus__credential',
  serviceBusQueue: 'SERVICEBUS_QUEUE',
} as const;

/** Older names used by docs/agent-runbook.md; accepted so either spelling works. The primary name wins. */
const ALIASES: Partial<Record<keyof typeof AGENT_SETTINGS, string>> = {
  pool: 'MACHINE_POOL',
  cacheDir: 'LORA_CACHE_DIR',
  cacheBudget: 'LORA_CACHE_BUDGET_BYTES',
};

export const CREDENTIAL_NAME = 'machine-token';

export type StorageQueueTransport = {
  kind: 'storage-queue';
  prefix: string;
  lockSeconds: number;
  connection: { kind: 'connectionString'; connectionString: string } | { kind: 'identity'; queueServiceUri: string; clientId?: string };
};
export type ServiceBusTransport = {
  kind: 'servicebus';
  queue: string;
  connection: { kind: 'connectionString'; connectionString: string } | { kind: 'identity'; fullyQualifiedNamespace: string; clientId?: string };
};
export type TransportConfig = StorageQueueTransport | ServiceBusTransport;

export interface CommandExecutorConfig {
  kind: 'command';
  command: string;
  args: string[];
}
export interface ComfyUiExecutorConfig {
  kind: 'comfyui';
  url: string;
  loraDir: string;
  stallMs: number;
}
export type ExecutorConfig = CommandExecutorConfig | ComfyUiExecutorConfig;

export interface AgentConfig {
  apiBaseUrl: string;
  machineId: string;
  machineToken: string;
  /** Where the token came from, for the startup log (never the token itself). */
  machineTokenSource: 'MACHINE_TOKEN' | 'MACHINE_TOKEN_FILE' | 'credential';
  pool: string;
  slots: number;
  cacheDir: string;
  cacheBudgetBytes: number;
  cacheTtlMs: number;
  pinnedLoras: string[];
  /** Run directories (job file, output) and the outcome outbox. */
  stateDir: string;
  executor: ExecutorConfig;
  cancelGraceMs: number;
  drainGraceMs: number;
  heartbeatMs: number;
  ttlSweepMs: number;
  lockRenewMs: number;
  keepRunDirs: boolean;
  logLevel: string;
  transport: TransportConfig;
}

type Env = Record<string, string | undefined>;

const GiB = 1024 ** 3;
const UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  k: 1024,
  kb: 1024,
  kib: 1024,
  m: 1024 ** 2,
  mb: 1024 ** 2,
  mib: 1024 ** 2,
  g: GiB,
  gb: GiB,
  gib: GiB,
  t: 1024 ** 4,
  tb: 1024 ** 4,
  tib: 1024 ** 4,
};

/**
 * "53687091200", "50GB", "50 GiB", "300MB", "1.5G" → bytes. Units are binary (1 GB = 1 GiB = 1024³ bytes), the same
 * convention as the cache's 50 GB default. Returns undefined for anything else.
 */
export function parseBytes(value: string): number | undefined {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(value);
  if (!m) return undefined;
  const unit = UNITS[m[2]!.toLowerCase()];
  if (unit === undefined) return undefined;
  const n = Math.floor(Number(m[1]) * unit);
  return Number.isSafeInteger(n) && n > 0 ? n : undefined;
}

/**
 * A command line without a shell: a JSON array (`["python3", "run.py", "--fast"]`), or words separated by spaces
 * where single or double quotes group words and a backslash escapes the next character. No variables, globs, pipes.
 */
export function splitCommand(value: string): string[] {
  const trimmed = value.trim();
  if (trimmed.startsWith('[')) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(trimmed);
    } catch {
      throw new Error('looks like a JSON array but does not parse');
    }
    if (!Array.isArray(parsed) || parsed.some((p) => typeof p !== 'string')) throw new Error('must be a JSON array of strings');
    return parsed as string[];
  }
  const words: string[] = [];
  let current = '';
  let inWord = false;
  let quote: '"' | "'" | null = null;
  for (let i = 0; i < trimmed.length; i++) {
    const c = trimmed[i]!;
    if (quote) {
      if (c === quote) quote = null;
      else if (c === '\\' && quote === '"' && i + 1 < trimmed.length) current += trimmed[++i];
      else current += c;
      continue;
    }
    if (c === '"' || c === "'") {
      quote = c;
      inWord = true;
    } else if (c === '\\' && i + 1 < trimmed.length) {
      current += trimmed[++i];
      inWord = true;
    } else if (/\s/.test(c)) {
      if (inWord) words.push(current);
      current = '';
      inWord = false;
    } else {
      current += c;
      inWord = true;
    }
  }
  if (quote) throw new Error(`unterminated ${quote} quote`);
  if (inWord) words.push(current);
  return words;
}

/**
 * KEY=VALUE lines (systemd EnvironmentFile / dotenv style): `#` comments, blank lines, an optional `export `, values
 * optionally in single quotes (literal) or double quotes (\n, \", \\ escapes). No interpolation.
 */
export function parseEnvFile(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  const lines = text.split(/\r?\n/);
  for (let n = 0; n < lines.length; n++) {
    const line = lines[n]!.trim();
    if (!line || line.startsWith('#')) continue;
    const m = /^(?:export\s+)?([A-Za-z_][A-Za-z0-9_.]*)\s*=\s*(.*)$/.exec(line);
    if (!m) throw new AgentConfigError(`env file line ${n + 1}: expected KEY=VALUE, got ${JSON.stringify(line.slice(0, 80))}`);
    let value = m[2]!;
    if (value.startsWith("'")) {
      const end = value.indexOf("'", 1);
      if (end < 0) throw new AgentConfigError(`env file line ${n + 1}: unterminated ' quote for ${m[1]}`);
      value = value.slice(1, end);
    } else if (value.startsWith('"')) {
      let v = '';
      let i = 1;
      for (; i < value.length && value[i] !== '"'; i++) {
        if (value[i] === '\\' && i + 1 < value.length) {
          const e = value[++i]!;
          v += e === 'n' ? '\n' : e === 't' ? '\t' : e;
        } else v += value[i];
      }
      if (i >= value.length) throw new AgentConfigError(`env file line ${n + 1}: unterminated " quote for ${m[1]}`);
      value = v;
    } else {
      value = value.replace(/\s+#.*$/, '').trim(); // trailing comment on an unquoted value
    }
    out[m[1]!] = value;
  }
  return out;
}

/** The environment the agent reads: the env file (if any) under the process environment. */
export function readAgentEnv(envFile: string | undefined, env: Env = process.env): Env {
  if (!envFile) return { ...env };
  let text: string;
  try {
    text = readFileSync(envFile, 'utf8');
  } catch (err) {
    throw new AgentConfigError(`cannot read --env-file ${envFile}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  const fromFile = parseEnvFile(text);
  const merged: Env = { ...fromFile };
  for (const [k, v] of Object.entries(env)) if (v !== undefined && v !== '') merged[k] = v;
  return merged;
}

const secondsSetting = (min: number, max: number) => z.coerce.number().min(min).max(max);

const scalarSchema = z.object({
  api: z.string().url('must be the API base URL, e.g. https://func-api-xxxx.azurewebsites.net/api'),
  machineId: z
    .string()
    .regex(/^[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){1,46}$/, 'must be 2-47 chars of a-z, 0-9 and single hyphens (as registered)'),
  pool: z.string().regex(/^[a-z][a-z0-9-]{0,31}$/, 'must be a lower-case pool name such as standard').default(DEFAULT_POOL),
  slots: z.coerce.number().int().min(1).max(64).default(1),
  cacheTtlDays: secondsSetting(0.000001, 3650).default(7),
  executor: z.enum(['command', 'comfyui']).default('command'),
  cancelGraceSeconds: secondsSetting(0, 3600).default(10),
  drainGraceSeconds: secondsSetting(0, 86_400).default(120),
  heartbeatSeconds: secondsSetting(0.2, 60).default(5),
  ttlSweepMinutes: secondsSetting(0.01, 24 * 60).default(60),
  lockRenewSeconds: secondsSetting(0.5, 3600).default(20),
  dispatchLockSeconds: z.coerce.number().int().min(5).max(7 * 24 * 3600).default(60),
  keepRunDirs: z.enum(['true', 'false', '1', '0', 'yes', 'no']).default('false'),
  logLevel: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'),
  transport: z.enum(['storage-queue', 'servicebus']).default('servicebus'),
  storageQueuePrefix: z.string().regex(/^[a-z0-9-]{1,15}$/, 'must be 1-15 chars of a-z, 0-9 and hyphens').default('machine-'),
  serviceBusQueue: z.string().min(1).default('jobs'),
});

function get(env: Env, key: keyof typeof AGENT_SETTINGS): string | undefined {
  const primary = env[AGENT_SETTINGS[key]]?.trim();
  if (primary) return primary;
  const alias = ALIASES[key];
  return alias ? env[alias]?.trim() || undefined : undefined;
}

function settingName(key: keyof typeof AGENT_SETTINGS, env: Env): string {
  const alias = ALIASES[key];
  return !env[AGENT_SETTINGS[key]]?.trim() && alias && env[alias]?.trim() ? alias : AGENT_SETTINGS[key];
}

function readToken(env: Env): { token: string; source: AgentConfig['machineTokenSource'] } {
  const direct = env[AGENT_SETTINGS.machineToken]?.trim();
  if (direct) return { token: direct, source: 'MACHINE_TOKEN' };
  const file = env[AGENT_SETTINGS.machineTokenFile]?.trim();
  const credDir = env.CREDENTIALS_DIRECTORY?.trim();
  const [path, source, name] = file
    ? [file, 'MACHINE_TOKEN_FILE' as const, AGENT_SETTINGS.machineTokenFile]
    : credDir && existsSync(join(credDir, CREDENTIAL_NAME))
      ? [join(credDir, CREDENTIAL_NAME), 'credential' as const, `$CREDENTIALS_DIRECTORY/${CREDENTIAL_NAME}`]
      : [undefined, undefined, undefined];
  if (!path || !source) {
    throw new AgentConfigError(
      `Missing machine token: set ${AGENT_SETTINGS.machineTokenFile} to a file holding it, load it with systemd ` +
        `LoadCredential=${CREDENTIAL_NAME}:/etc/lora-router/credentials/machine-token, or (development only) set ${AGENT_SETTINGS.machineToken}.`,
    );
  }
  let token: string;
  try {
    token = readFileSync(path, 'utf8').trim();
  } catch (err) {
    throw new AgentConfigError(`Invalid setting ${name}: cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}).`);
  }
  if (!token) throw new AgentConfigError(`Invalid setting ${name}: ${path} is empty.`);
  return { token, source };
}

function readTransport(env: Env, kind: 'storage-queue' | 'servicebus', s: z.infer<typeof scalarSchema>): TransportConfig {
  if (kind === 'storage-queue') {
    const cs = env[AGENT_SETTINGS.storageConnection]?.trim();
    const uri = env[AGENT_SETTINGS.storageQueueServiceUri]?.trim();
    if (uri) {
      if (!/^https?:\/\//.test(uri)) throw new AgentConfigError(`Invalid setting ${AGENT_SETTINGS.storageQueueServiceUri}: must be a URL.`);
      return {
        kind,
        prefix: s.storageQueuePrefix,
        lockSeconds: s.dispatchLockSeconds,
        connection: { kind: 'identity', queueServiceUri: uri, clientId: env[AGENT_SETTINGS.storageClientId]?.trim() || undefined },
      };
    }
    if (cs) {
      if (!/QueueEndpoint=|UseDevelopmentStorage=true|AccountName=/i.test(cs)) {
        throw new AgentConfigError(`Invalid setting ${AGENT_SETTINGS.storageConnection}: expected a storage connection string.`);
      }
      return { kind, prefix: s.storageQueuePrefix, lockSeconds: s.dispatchLockSeconds, connection: { kind: 'connectionString', connectionString: cs } };
    }
    throw new AgentConfigError(
      `Missing setting ${AGENT_SETTINGS.storageQueueServiceUri} (identity) or ${AGENT_SETTINGS.storageConnection} (connection string, local) for DISPATCH_TRANSPORT=storage-queue.`,
    );
  }
  const ns = env[AGENT_SETTINGS.serviceBusNamespace]?.trim();
  const cs = env[AGENT_SETTINGS.serviceBusConnection]?.trim();
  if (ns) {
    if (!/^[A-Za-z0-9.-]+$/.test(ns)) {
      throw new AgentConfigError(`Invalid setting ${AGENT_SETTINGS.serviceBusNamespace}: expected a host name such as sb-xxxx.servicebus.windows.net.`);
    }
    return {
      kind,
      queue: s.serviceBusQueue,
      connection: { kind: 'identity', fullyQualifiedNamespace: ns, clientId: env[AGENT_SETTINGS.serviceBusClientId]?.trim() || undefined },
    };
  }
  if (cs) {
    if (!/Endpoint=sb:\/\//i.test(cs)) throw new AgentConfigError(`Invalid setting ${AGENT_SETTINGS.serviceBusConnection}: expected "Endpoint=sb://...;...".`);
    return { kind, queue: s.serviceBusQueue, connection: { kind: 'connectionString', connectionString: cs } };
  }
  throw new AgentConfigError(
    `Missing setting ${AGENT_SETTINGS.serviceBusNamespace} (identity) or ${AGENT_SETTINGS.serviceBusConnection} (connection string) for DISPATCH_TRANSPORT=servicebus.`,
  );
}

/** EXECUTOR=comfyui: where ComfyUI answers, the loras folder it reads, and when a silent ComfyUI counts as hung. */
function readComfyUiConfig(env: Env, abs: (p: string) => string): ComfyUiExecutorConfig {
  const url = get(env, 'comfyUiUrl') ?? 'http://127.0.0.1:8188';
  if (!z.string().url().safeParse(url).success || !/^https?:/.test(url)) {
    throw new AgentConfigError(`Invalid setting ${AGENT_SETTINGS.comfyUiUrl}=${JSON.stringify(url)}: must be ComfyUI's base URL, e.g. http://127.0.0.1:8188.`);
  }
  const loraDir = get(env, 'comfyUiLoraDir');
  if (!loraDir) {
    throw new AgentConfigError(`Missing setting ${AGENT_SETTINGS.comfyUiLoraDir} (ComfyUI's models/loras folder, e.g. /opt/ComfyUI/models/loras) for EXECUTOR=comfyui.`);
  }
  const stallRaw = get(env, 'comfyUiStallSeconds') ?? '300';
  const stall = Number(stallRaw);
  if (!Number.isFinite(stall) || stall < 1 || stall > 86_400) {
    throw new AgentConfigError(`Invalid setting ${AGENT_SETTINGS.comfyUiStallSeconds}=${JSON.stringify(stallRaw)}: seconds between 1 and 86400.`);
  }
  return { kind: 'comfyui', url: url.replace(/\/+$/, ''), loraDir: abs(loraDir), stallMs: stall * 1000 };
}

/** Reads and validates every setting. Throws AgentConfigError naming the first bad one. */
export function loadAgentConfig(env: Env = process.env, cwd = process.cwd()): AgentConfig {
  const raw: Record<string, string | undefined> = {};
  for (const key of Object.keys(scalarSchema.shape) as (keyof typeof AGENT_SETTINGS)[]) raw[key] = get(env, key);
  if (!raw.api) throw new AgentConfigError(`Missing setting ${AGENT_SETTINGS.api} (the API base URL, e.g. https://<app host>/api).`);
  if (!raw.machineId) throw new AgentConfigError(`Missing setting ${AGENT_SETTINGS.machineId} (this machine's registered id).`);
  const parsed = scalarSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const key = String(issue.path[0]) as keyof typeof AGENT_SETTINGS;
    throw new AgentConfigError(`Invalid setting ${settingName(key, env)}=${JSON.stringify(raw[key] ?? '')}: ${issue.message}.`);
  }
  const s = parsed.data;

  const cacheDirRaw = get(env, 'cacheDir') ?? env.CACHE_DIRECTORY?.split(':')[0]?.trim();
  if (!cacheDirRaw) {
    throw new AgentConfigError(`Missing setting ${AGENT_SETTINGS.cacheDir} (the LoRA cache directory, e.g. /var/cache/lora-router).`);
  }
  const abs = (p: string) => (isAbsolute(p) ? p : resolve(cwd, p));
  const cacheDir = abs(cacheDirRaw);

  let cacheBudgetBytes = 50 * GiB;
  const budgetRaw = get(env, 'cacheBudget');
  if (budgetRaw) {
    const b = parseBytes(budgetRaw);
    if (b === undefined) {
      throw new AgentConfigError(`Invalid setting ${settingName('cacheBudget', env)}=${JSON.stringify(budgetRaw)}: expected bytes or a size such as 50GB or 300MB.`);
    }
    cacheBudgetBytes = b;
  }

  const pinnedLoras = (get(env, 'pinnedLoras') ?? '')
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean);
  for (const p of pinnedLoras) {
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,114}\.safetensors$/.test(p)) {
      throw new AgentConfigError(`Invalid setting ${AGENT_SETTINGS.pinnedLoras}: ${JSON.stringify(p)} is not a shared LoRA file name (name.safetensors).`);
    }
  }

  const stateDir = abs(get(env, 'stateDir') ?? env.STATE_DIRECTORY?.split(':')[0]?.trim() ?? join(cacheDir, 'agent-state'));

  let executor: ExecutorConfig;
  if (s.executor === 'comfyui') executor = readComfyUiConfig(env, abs);
  else {
    const cmdRaw = get(env, 'executorCommand');
    if (!cmdRaw) {
      throw new AgentConfigError(`Missing setting ${AGENT_SETTINGS.executorCommand} (the program that runs a job, e.g. ["/usr/bin/python3","/opt/jobs/run.py"]).`);
    }
    let words: string[];
    try {
      words = splitCommand(cmdRaw);
    } catch (err) {
      throw new AgentConfigError(`Invalid setting ${AGENT_SETTINGS.executorCommand}: ${(err as Error).message}.`);
    }
    const argsRaw = get(env, 'executorArgs');
    if (argsRaw) {
      let extra: unknown;
      try {
        extra = JSON.parse(argsRaw);
      } catch {
        extra = undefined;
      }
      if (!Array.isArray(extra) || extra.some((a) => typeof a !== 'string')) {
        throw new AgentConfigError(`Invalid setting ${AGENT_SETTINGS.executorArgs}: must be a JSON array of strings, e.g. ["--fast"].`);
      }
      words = [...words, ...(extra as string[])];
    }
    if (words.length === 0 || !words[0]) throw new AgentConfigError(`Invalid setting ${AGENT_SETTINGS.executorCommand}: empty command.`);
    executor = { kind: 'command', command: words[0], args: words.slice(1) };
  }

  const { token, source } = readToken(env);
  return {
    apiBaseUrl: s.api.replace(/\/+$/, ''),
    machineId: s.machineId,
    machineToken: token,
    machineTokenSource: source,
    pool: s.pool,
    slots: s.slots,
    cacheDir,
    cacheBudgetBytes,
    cacheTtlMs: Math.round(s.cacheTtlDays * 86_400_000),
    pinnedLoras,
    stateDir,
    executor,
    cancelGraceMs: Math.round(s.cancelGraceSeconds * 1000),
    drainGraceMs: Math.round(s.drainGraceSeconds * 1000),
    heartbeatMs: Math.round(s.heartbeatSeconds * 1000),
    ttlSweepMs: Math.round(s.ttlSweepMinutes * 60_000),
    lockRenewMs: Math.round(s.lockRenewSeconds * 1000),
    keepRunDirs: ['true', '1', 'yes'].includes(s.keepRunDirs),
    logLevel: s.logLevel,
    transport: readTransport(env, s.transport, s),
  };
}

/** The config as safe to log: no token, no connection strings. */
export function describeConfig(c: AgentConfig): Record<string, unknown> {
  return {
    api: c.apiBaseUrl,
    machine_id: c.machineId,
    token_from: c.machineTokenSource,
    pool: c.pool,
    slots: c.slots,
    cache_dir: c.cacheDir,
    cache_budget_bytes: c.cacheBudgetBytes,
    cache_ttl_days: c.cacheTtlMs / 86_400_000,
    pinned_loras: c.pinnedLoras,
    state_dir: c.stateDir,
    executor: { ...c.executor },
    cancel_grace_s: c.cancelGraceMs / 1000,
    drain_grace_s: c.drainGraceMs / 1000,
    heartbeat_s: c.heartbeatMs / 1000,
    transport:
      c.transport.kind === 'storage-queue'
        ? { kind: c.transport.kind, prefix: c.transport.prefix, auth: c.transport.connection.kind }
        : { kind: c.transport.kind, queue: c.transport.queue, auth: c.transport.connection.kind },
  };
}

/** Help text for `lora-router agent --help`. */
export const SETTINGS_HELP = `
Settings (environment or --env-file; the environment wins):
  LORA_ROUTER_API                 API base URL, e.g. https://<app host>/api                 (required)
  MACHINE_ID                      this machine's registered id                              (required)
  MACHINE_TOKEN_FILE              file holding the machine token; or systemd
                                  LoadCredential=machine-token:<path>; or MACHINE_TOKEN (dev)
  POOL                            pool registered for this machine                          (standard)
  SLOTS                           jobs run at once                                          (1)
  CACHE_DIR                       LoRA cache directory (default $CACHE_DIRECTORY)           (required)
  CACHE_BUDGET                    cache size: bytes or 50GB / 300MB (binary units)          (50GB)
  CACHE_TTL_DAYS                  delete LoRAs unused this long                             (7)
  PINNED_LORAS                    comma list of shared LoRA file names never evicted
  STATE_DIR                       run dirs + outcome outbox ($STATE_DIRECTORY, else CACHE_DIR/agent-state)
  EXECUTOR                        command | comfyui                                         (command)
  EXECUTOR_COMMAND                program + args, JSON array or words (no shell)            (required for command)
  EXECUTOR_ARGS                   extra args, JSON array
  COMFYUI_URL                     ComfyUI's base URL                                        (http://127.0.0.1:8188)
  COMFYUI_LORA_DIR                ComfyUI's models/loras folder (links are made below it)   (required for comfyui)
  COMFYUI_STALL_SECONDS           no ComfyUI message this long → attempt fails, retryable   (300)
  CANCEL_GRACE_SECONDS            SIGTERM → SIGKILL delay when a job is cancelled           (10)
  DRAIN_GRACE_SECONDS             on SIGTERM, how long running jobs may finish              (120)
  HEARTBEAT_SECONDS               heartbeat interval                                        (5)
  TTL_SWEEP_MINUTES               cache TTL sweep interval                                  (60)
  LOCK_RENEW_SECONDS              dispatch message lock renewal interval                    (20)
  DISPATCH_LOCK_SECONDS           storage-queue visibility timeout per renewal              (60)
  KEEP_RUN_DIRS                   keep each run's job file and output dir                   (false)
  LOG_LEVEL                       pino level                                                (info)
  DISPATCH_TRANSPORT              servicebus | storage-queue                                (servicebus)
    servicebus:    ServiceBus__fullyQualifiedNamespace (+ ServiceBus__clientId) or ServiceBus (connection
                   string), SERVICEBUS_QUEUE (jobs)
    storage-queue: LoraStorage__queueServiceUri (+ LoraStorage__clientId) or LoraStorage (connection string),
                   DISPATCH_QUEUE_PREFIX (machine-)
`;

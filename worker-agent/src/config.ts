// The agent's settings: one typed, validated object read from the environment and, optionally, an env file
// (`lora-router agent --env-file /etc/lora-router/agent.env`). The process environment wins over the file, like
// `node --env-file` and dotenv. A bad or missing setting stops startup with a message that names it.
// Names, defaults, parsers and help are in settings.ts; this file turns them into an AgentConfig.
//
// The machine token never has to live in the environment: MACHINE_TOKEN_FILE, or systemd's LoadCredential=
// (`$CREDENTIALS_DIRECTORY/machine-token`) are read instead when MACHINE_TOKEN is not set.
import { existsSync, readFileSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import type { z } from 'zod';
import { AgentConfigError, splitCommand, type Env } from './env-file.js';
import { AGENT_SETTINGS, SETTINGS, type SettingKey } from './settings.js';
import { SHARED_LORA_FILENAME } from '../../contract/ids.js';
import { AgentIdentityError, describeCredential, readAgentCredential, type AgentCredentialConfig } from './identity.js';

export { AgentConfigError, parseBytes, parseEnvFile, readAgentEnv, splitCommand } from './env-file.js';
export { AGENT_SETTINGS, SETTINGS_HELP } from './settings.js';

export const CREDENTIAL_NAME = 'machine-token';

export type StorageQueueTransport = {
  kind: 'storage-queue';
  prefix: string;
  lockSeconds: number;
  /** Local tests/demos only: while this file exists, receive() fails as a busy Service Bus session does. */
  simulateSessionBusyFile?: string;
  connection: { kind: 'connectionString'; connectionString: string } | { kind: 'identity'; queueServiceUri: string; credential: AgentCredentialConfig };
};
export type ServiceBusTransport = {
  kind: 'servicebus';
  queue: string;
  connection: { kind: 'connectionString'; connectionString: string } | { kind: 'identity'; fullyQualifiedNamespace: string; credential: AgentCredentialConfig };
};
export type TransportConfig = StorageQueueTransport | ServiceBusTransport;

export interface CommandExecutorConfig {
  kind: 'command';
  command: string;
  args: string[];
  /** EXECUTOR_USER: the unprivileged user jobs run as; undefined only with EXECUTOR_TRUSTED_SAME_USER=true. */
  jobUser?: string;
}
export interface ComfyUiExecutorConfig {
  kind: 'comfyui';
  url: string;
  /** ComfyUI's models/loras folder (absolute). */
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
  /** The file the token was read from (re-read after a 401); undefined for MACHINE_TOKEN. */
  machineTokenPath?: string;
  pool: string;
  slots: number;
  /** Dispatches taken beyond `slots` (QUEUE_DEPTH): claimed and downloading while the slots are busy (run-slots.ts). */
  queueDepth: number;
  /** QUEUE_WAIT_LIMIT_SECONDS: 'auto' (from recent run times) or seconds (0 = never); see queue-wait.ts. */
  queueWaitLimitSeconds: number | 'auto';
  /** PREWARM_HINT_MIN_IDLE_SECONDS: a scheduler hint may evict only entries unused this long (prewarm-hints.ts). */
  prewarmHintMinIdleMs?: number;
  cacheDir: string;
  cacheBudgetBytes: number;
  /** Free disk a download must leave behind (CACHE_DISK_RESERVE). */
  cacheDiskReserveBytes: number;
  cacheTtlMs: number;
  pinnedLoras: string[];
  /** Run directories (job file, output) and the outcome outbox. */
  stateDir: string;
  executor: ExecutorConfig;
  /** Longest a job may run before it is stopped and failed. */
  maxRunMs: number;
  cancelGraceMs: number;
  drainGraceMs: number;
  heartbeatMs: number;
  /** After a 401: how long to keep re-reading the token file before exiting EXIT_TOKEN_REFUSED. */
  tokenRefusedGraceMs: number;
  ttlSweepMs: number;
  lockRenewMs: number;
  keepRunDirs: boolean;
  logLevel: string;
  transport: TransportConfig;
}

/** The settings with a parser in the table, parsed. */
type WithParser = { [K in SettingKey]: (typeof SETTINGS)[K] extends { parse: z.ZodType } ? K : never }[SettingKey];
type Parsed = { [K in WithParser]: z.output<(typeof SETTINGS)[K]['parse']> };

function get(env: Env, key: SettingKey): string | undefined {
  return env[SETTINGS[key].name]?.trim() || undefined;
}

/** Every setting with a parser: the environment's value, else its default, parsed. Throws naming the first bad one. */
function parseTable(env: Env): Parsed {
  const out: Record<string, unknown> = {};
  for (const [key, spec] of Object.entries(SETTINGS) as [SettingKey, (typeof SETTINGS)[SettingKey]][]) {
    if (!('parse' in spec)) continue;
    const raw = get(env, key) ?? ('default' in spec ? spec.default : undefined);
    if (raw === undefined) throw new AgentConfigError(`Missing setting ${spec.name} (${spec.help}).`);
    const parsed = spec.parse.safeParse(raw);
    if (!parsed.success) {
      throw new AgentConfigError(`Invalid setting ${spec.name}=${JSON.stringify(raw)}: ${parsed.error.issues[0]!.message}.`);
    }
    out[key] = parsed.data;
  }
  return out as Parsed;
}

function readToken(env: Env): { token: string; source: AgentConfig['machineTokenSource']; path?: string } {
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
  return { token, source, path };
}

function identity(env: Env, transportClientId: string | undefined): AgentCredentialConfig {
  try {
    return readAgentCredential(env, transportClientId);
  } catch (err) {
    if (err instanceof AgentIdentityError) throw new AgentConfigError(err.message);
    throw err;
  }
}

function readTransport(env: Env, kind: 'storage-queue' | 'servicebus', s: Parsed): TransportConfig {
  const busyFile = env[AGENT_SETTINGS.simulateSessionBusyFile]?.trim() || undefined;
  if (busyFile && kind !== 'storage-queue') {
    throw new AgentConfigError(`${AGENT_SETTINGS.simulateSessionBusyFile} is for the local storage-queue transport only (tests and demos).`);
  }
  if (kind === 'storage-queue') {
    const cs = env[AGENT_SETTINGS.storageConnection]?.trim();
    const uri = env[AGENT_SETTINGS.storageQueueServiceUri]?.trim();
    if (uri) {
      if (!/^https?:\/\//.test(uri)) throw new AgentConfigError(`Invalid setting ${AGENT_SETTINGS.storageQueueServiceUri}: must be a URL.`);
      return {
        kind,
        prefix: s.storageQueuePrefix,
        lockSeconds: s.dispatchLockSeconds,
        ...(busyFile ? { simulateSessionBusyFile: busyFile } : {}),
        connection: { kind: 'identity', queueServiceUri: uri, credential: identity(env, env[AGENT_SETTINGS.storageClientId]?.trim() || undefined) },
      };
    }
    if (cs) {
      if (!/QueueEndpoint=|UseDevelopmentStorage=true|AccountName=/i.test(cs)) {
        throw new AgentConfigError(`Invalid setting ${AGENT_SETTINGS.storageConnection}: expected a storage connection string.`);
      }
      return {
        kind,
        prefix: s.storageQueuePrefix,
        lockSeconds: s.dispatchLockSeconds,
        ...(busyFile ? { simulateSessionBusyFile: busyFile } : {}),
        connection: { kind: 'connectionString', connectionString: cs },
      };
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
      connection: { kind: 'identity', fullyQualifiedNamespace: ns, credential: identity(env, env[AGENT_SETTINGS.serviceBusClientId]?.trim() || undefined) },
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

/** Reads and validates every setting. Throws AgentConfigError naming the first bad one. */
export function loadAgentConfig(env: Env = process.env, cwd = process.cwd()): AgentConfig {
  const s = parseTable(env);

  const cacheDirRaw = get(env, 'cacheDir') ?? env.CACHE_DIRECTORY?.split(':')[0]?.trim();
  if (!cacheDirRaw) {
    throw new AgentConfigError(`Missing setting ${AGENT_SETTINGS.cacheDir} (the LoRA cache directory, e.g. /var/cache/lora-router).`);
  }
  const abs = (p: string) => (isAbsolute(p) ? p : resolve(cwd, p));
  const cacheDir = abs(cacheDirRaw);


  const pinnedLoras = (get(env, 'pinnedLoras') ?? '')
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean);
  for (const p of pinnedLoras) {
    if (!SHARED_LORA_FILENAME.test(p)) {
      throw new AgentConfigError(`Invalid setting ${AGENT_SETTINGS.pinnedLoras}: ${JSON.stringify(p)} is not a shared LoRA file name (name.safetensors).`);
    }
  }

  const stateDir = abs(get(env, 'stateDir') ?? env.STATE_DIRECTORY?.split(':')[0]?.trim() ?? join(cacheDir, 'agent-state'));

  let executor: ExecutorConfig;
  const jobUser = get(env, 'executorUser');
  if (jobUser !== undefined && !/^[a-z_][a-z0-9_-]{0,31}\$?$|^[0-9]+$/i.test(jobUser)) {
    throw new AgentConfigError(`Invalid setting ${AGENT_SETTINGS.executorUser}=${JSON.stringify(jobUser)}: expected a user name (e.g. lora-router-job).`);
  }
  if (s.executor === 'comfyui') {
    if (jobUser !== undefined) {
      throw new AgentConfigError(
        `${AGENT_SETTINGS.executorUser} applies to EXECUTOR=command only: with EXECUTOR=comfyui the agent starts no job process; run the ComfyUI service itself as the unprivileged job user (worker-agent/README.md "Run with ComfyUI").`,
      );
    }
    const loraDir = get(env, 'comfyUiLoraDir');
    if (!loraDir) {
      throw new AgentConfigError(`Missing setting ${AGENT_SETTINGS.comfyUiLoraDir} (ComfyUI's models/loras folder, e.g. /opt/ComfyUI/models/loras) for EXECUTOR=comfyui.`);
    }
    executor = { kind: 'comfyui', url: s.comfyUiUrl.replace(/\/+$/, ''), loraDir: abs(loraDir), stallMs: s.comfyUiStallSeconds * 1000 };
  } else {
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
    if (jobUser === undefined && !s.executorTrustedSameUser) {
      throw new AgentConfigError(
        `Missing setting ${AGENT_SETTINGS.executorUser}: jobs must not run as the agent's own user (a job could read the machine token from the agent). ` +
          `Set ${AGENT_SETTINGS.executorUser} to an unprivileged user (docs/agent-runbook.md "Run jobs as their own user"), or ${AGENT_SETTINGS.executorTrustedSameUser}=true on a trusted single-tenant box.`,
      );
    }
    executor = { kind: 'command', command: words[0], args: words.slice(1), ...(jobUser !== undefined ? { jobUser } : {}) };
  }

  const { token, source, path: tokenPath } = readToken(env);
  return {
    apiBaseUrl: s.api.replace(/\/+$/, ''),
    machineId: s.machineId,
    machineToken: token,
    machineTokenSource: source,
    ...(tokenPath ? { machineTokenPath: tokenPath } : {}),
    pool: s.pool,
    slots: s.slots,
    queueDepth: s.queueDepth,
    queueWaitLimitSeconds: s.queueWaitLimit,
    prewarmHintMinIdleMs: Math.round(s.prewarmHintMinIdleSeconds * 1000),
    cacheDir,
    cacheBudgetBytes: s.cacheBudget,
    cacheDiskReserveBytes: s.cacheDiskReserve,
    cacheTtlMs: Math.round(s.cacheTtlDays * 86_400_000),
    pinnedLoras,
    stateDir,
    executor,
    maxRunMs: Math.round(s.executorMaxRunSeconds * 1000),
    cancelGraceMs: Math.round(s.cancelGraceSeconds * 1000),
    drainGraceMs: Math.round(s.drainGraceSeconds * 1000),
    heartbeatMs: Math.round(s.heartbeatSeconds * 1000),
    tokenRefusedGraceMs: Math.round(s.tokenRefusedGraceSeconds * 1000),
    ttlSweepMs: Math.round(s.ttlSweepMinutes * 60_000),
    lockRenewMs: Math.round(s.lockRenewSeconds * 1000),
    keepRunDirs: s.keepRunDirs,
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
    queue_depth: c.queueDepth,
    queue_wait_limit_s: c.queueWaitLimitSeconds,
    cache_dir: c.cacheDir,
    cache_budget_bytes: c.cacheBudgetBytes,
    cache_disk_reserve_bytes: c.cacheDiskReserveBytes,
    cache_ttl_days: c.cacheTtlMs / 86_400_000,
    pinned_loras: c.pinnedLoras,
    state_dir: c.stateDir,
    executor: { ...c.executor },
    max_run_s: c.maxRunMs / 1000,
    cancel_grace_s: c.cancelGraceMs / 1000,
    drain_grace_s: c.drainGraceMs / 1000,
    heartbeat_s: c.heartbeatMs / 1000,
    transport:
      c.transport.kind === 'storage-queue'
        ? { kind: c.transport.kind, prefix: c.transport.prefix, auth: c.transport.connection.kind, ...credentialOf(c.transport) }
        : { kind: c.transport.kind, queue: c.transport.queue, auth: c.transport.connection.kind, ...credentialOf(c.transport) },
  };
}

function credentialOf(t: TransportConfig): { credential?: Record<string, string> } {
  return t.connection.kind === 'identity' ? { credential: describeCredential(t.connection.credential) } : {};
}

// The agent process: settings → logger → cache → receiver → agent; SIGTERM/SIGINT drain it. Used by
// `lora-router agent [--env-file path]` (cli/commands/agent.ts).
//
// Exit codes: 0 after a clean drain; 78 (EX_CONFIG) for a bad setting, a missing executor, or a machine token the
// control plane refuses even after re-reading the token file (the systemd unit does not restart on 78: restarting
// cannot fix it); 1 for anything else (systemd restarts it).
import { chmodSync, mkdirSync, readFileSync, realpathSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Agent, AgentStartError } from './agent.js';
import { HttpControlPlane } from './api.js';
import { LoraCache } from './cache/lora-cache.js';
import { CacheEntriesReader } from './cache-entries.js';
import { formatCheck, runCheck } from './check.js';
import { AgentConfigError, describeConfig, loadAgentConfig, readAgentEnv } from './config.js';
import { resolveExecutable } from './executor/preflight.js';
import { createExecutor } from './executor/index.js';
import { jobUserStartupProblem, resolveJobUser, type JobUser } from './executor/job-user.js';
import { TokenStore } from './token-store.js';
import { createAgentLogger } from './logger.js';
import { createReceiver } from './transport.js';
import { agentVersion } from './version.js';
import { registerCacheMetrics, setupAgentTelemetry, type AgentTelemetry } from './telemetry.js';

export const EX_CONFIG = 78;
const EX_USAGE = 64;

export interface AgentMainOptions {
  envFile?: string;
  env?: NodeJS.ProcessEnv;
  /** Only check what can be checked (settings, executor, cache dir, API) and say what systemd provides, then exit. */
  check?: boolean;
}

/** Runs the agent until it is stopped by a signal. Resolves with the process exit code. */
export async function runAgentMain(opts: AgentMainOptions = {}): Promise<number> {
  if (opts.check) {
    const r = await runCheck({ envFile: opts.envFile, env: opts.env ?? process.env });
    process.stdout.write(formatCheck(r));
    return r.code;
  }
  let config;
  let telemetry: AgentTelemetry;
  try {
    const env = readAgentEnv(opts.envFile, opts.env ?? process.env);
    config = loadAgentConfig(env);
    telemetry = setupAgentTelemetry(env, config.machineId);
  } catch (err) {
    if (err instanceof AgentConfigError) {
      process.stderr.write(`lora-router agent: configuration error: ${err.message}\n`);
      return EX_CONFIG;
    }
    throw err;
  }
  // A missing job program is a configuration error (exit 78); a ComfyUI server is reached per job instead.
  if (config.executor.kind === 'command') {
    const exe = resolveExecutable(config.executor.command, opts.env ?? process.env);
    if (!exe.ok) {
      process.stderr.write(`lora-router agent: configuration error: ${exe.problem}\n`);
      return EX_CONFIG;
    }
  }

  const tokens = new TokenStore(config.stateDir);
  let jobUser: JobUser | undefined;
  if (config.executor.kind === 'command' && config.executor.jobUser) {
    const resolved = resolveJobUser(config.executor.jobUser);
    const problem = 'problem' in resolved ? resolved.problem : jobUserStartupProblem(resolved, [config.machineTokenPath ?? '', tokens.path].filter(Boolean));
    if (problem || 'problem' in resolved) {
      process.stderr.write(`lora-router agent: configuration error: ${problem}\n`);
      return EX_CONFIG;
    }
    jobUser = resolved;
  }

  const log = createAgentLogger({ level: config.logLevel, machineId: config.machineId });
  log.info({ version: agentVersion(), config: describeConfig(config), job_user: jobUser }, 'agent starting');

  // A job user may pass through the state directory to its own run directory (0711: no listing), nothing more.
  mkdirSync(config.stateDir, { recursive: true, mode: jobUser ? 0o711 : 0o750 });
  if (jobUser) {
    chmodSync(config.stateDir, 0o711);
    mkdirSync(join(config.stateDir, 'runs'), { recursive: true, mode: 0o711 });
    chmodSync(join(config.stateDir, 'runs'), 0o711);
  }
  const cache = new LoraCache({
    cacheDir: config.cacheDir,
    budgetBytes: config.cacheBudgetBytes,
    diskReserveBytes: config.cacheDiskReserveBytes,
    ttlMs: config.cacheTtlMs,
    pinned: config.pinnedLoras,
    logger: log.child({ component: 'cache' }),
  });
  try {
    await cache.open();
  } catch (err) {
    log.fatal({ err: (err as Error).message, cache_dir: config.cacheDir }, 'cannot open the LoRA cache');
    return 1;
  }
  const cacheEntries = new CacheEntriesReader(cache.dbPath);
  registerCacheMetrics(() => {
    try {
      return cache.inventory();
    } catch {
      return undefined; // closed
    }
  });
  const receiver = createReceiver(config.transport, config.machineId, log.child({ component: 'dispatch' }));
  const initialToken = tokens.pick(config.machineToken);
  const tokenPath = config.machineTokenPath;
  const agent = new Agent({
    config,
    initialToken,
    // After a refused beat the operator's token file is read again (a re-registration writes a new token there).
    reloadToken: tokenPath
      ? () => {
          try {
            return readFileSync(tokenPath, 'utf8').trim() || null;
          } catch {
            return null;
          }
        }
      : undefined,
    api: new HttpControlPlane({
      baseUrl: config.apiBaseUrl,
      token: initialToken,
      machineId: config.machineId,
      log: log.child({ component: 'api' }),
      onTokenRotated: (token) => tokens.save(token),
    }),
    receiver,
    cache,
    cacheEntries: () => cacheEntries.read(),
    executor: createExecutor(config.executor, { cancelGraceMs: config.cancelGraceMs, maxRunMs: config.maxRunMs, log: log.child({ component: 'executor' }), jobUser }),
    log,
  });

  const onSignal = (signal: NodeJS.Signals) => {
    log.info({ signal }, 'signal received');
    void agent.shutdown(`${signal} received`);
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  try {
    await agent.start();
  } catch (err) {
    const start = err instanceof AgentStartError;
    log.fatal({ err: (err as Error).message }, start ? 'agent cannot start' : 'agent failed to start');
    process.stderr.write(`lora-router agent: ${(err as Error).message}\n`);
    await receiver.close().catch(() => undefined);
    cacheEntries.close();
    await cache.close().catch(() => undefined);
    await telemetry.shutdown();
    return start ? EX_CONFIG : 1;
  }
  await agent.finished;
  cacheEntries.close();
  await telemetry.shutdown();
  process.off('SIGTERM', onSignal);
  process.off('SIGINT', onSignal);
  if (agent.exitCode !== 0) process.stderr.write(`lora-router agent: the control plane refuses this machine's token; exiting ${agent.exitCode}\n`);
  return agent.exitCode;
}

/** `node dist/worker-agent/src/main.js [--env-file path] [--check]`: the same as `lora-router agent`. */
function isEntryPoint(): boolean {
  if (!process.argv[1]) return false;
  try {
    return realpathSync(process.argv[1]) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isEntryPoint()) {
  const args = process.argv.slice(2);
  let envFile: string | undefined;
  let check = false;
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--check') check = true;
    else if (a === '--version') {
      process.stdout.write(`${agentVersion()}\n`);
      process.exit(0);
    }
    else if (a === '--env-file' && i + 1 < args.length) envFile = args[++i];
    else if (a.startsWith('--env-file=')) envFile = a.slice('--env-file='.length);
    else {
      process.stderr.write(`usage: main.js [--env-file path] [--check] (unknown argument ${JSON.stringify(a)})\n`);
      process.exit(EX_USAGE);
    }
  }
  runAgentMain({ envFile, check }).then(
    (code) => process.exit(code),
    (err: unknown) => {
      process.stderr.write(`lora-router agent: ${(err as Error)?.stack ?? String(err)}\n`);
      process.exit(1);
    },
  );
}

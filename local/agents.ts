// The local GPU fleet: real agent child processes (`lora-router agent`), each registered through the public admin API
// (POST /api/machines) with its own machine id and token, its own cache and state directories, a small cache budget
// so eviction shows. `npm start` runs them with EXECUTOR=comfyui, each next to its own ComfyUI protocol double
// (./comfyui.ts, testkit/comfyui: a test double of ComfyUI's API that renders small real PNGs); with
// `--executor command` they run the bundled job script instead (worker-agent/src/job-scripts/open-loras.ts: opens
// every LoRA it is given, checks its safetensors header, writes result.json).
//
// The one way an agent process is started: by `npm start` (startFleet), by the end-to-end and chaos tests (through
// test/support/test-agents.ts) and by the agent integration test (test/integration/agent.fixtures.ts, with its log
// lines captured), so every test runs exactly what `npm start` runs.
import { createWriteStream, mkdirSync, readdirSync, readFileSync, writeFileSync, type WriteStream } from 'node:fs';
import { join } from 'node:path';
import { issueDevToken } from '../functions/core/auth.js';
import { AGENT_SETTINGS, parseBytes } from '../worker-agent/src/config.js';
import { comfyUiAgentEnv, startComfyUiDouble, type ComfyUiProcess } from './comfyui.js';
import { startProcess, type Started } from './processes.js';
import { repoRoot } from './settings.js';
import type { Stack } from './stack.js';

export interface FleetAgent {
  machineId: string;
  pool: string;
  pid: number;
  cacheDir: string;
  budgetBytes: number;
  executor: FleetExecutor;
  /** EXECUTOR=comfyui: the ComfyUI (protocol double) next to this agent. */
  comfyui?: { url: string; pid: number; outputDir: string };
}
/** comfyui: each agent drives its own ComfyUI protocol double (testkit/comfyui); command: the bundled job script. */
export type FleetExecutor = 'comfyui' | 'command';
export interface Fleet {
  agents: FleetAgent[];
  stop(): Promise<void>;
}

/** Everything one agent process needs. */
export interface AgentLaunch {
  machineId: string;
  token: string;
  pool: string;
  slots: number;
  /** API base URL, ending in /api. */
  apiUrl: string;
  /** Storage connection string: the agent's dispatch queue lives there (transport storage-queue). */
  storageConnection: string;
  queuePrefix: string;
  /** The agent's own directory: token file, cache/, state/, agent.log. */
  dir: string;
  budgetBytes: number;
  heartbeatSeconds?: number;
  /** Visibility timeout of a received dispatch message (the storage-queue "lock"). */
  dispatchLockSeconds?: number;
  lockRenewSeconds?: number;
  drainGraceSeconds?: number;
  logLevel?: string;
  /** Extra agent settings (win over the defaults above). */
  env?: Record<string, string>;
  /** Append the agent's JSON log lines to this file instead of keeping them only in memory. */
  logFile?: string;
  /** Keep every log line parsed (AgentProcess.logs / hasLog), for tests that assert on the agent's log. */
  captureLogs?: boolean;
  root?: string;
}

export interface AgentProcess extends Started {
  launch: AgentLaunch;
  /** The last ~200 kB the process printed. */
  output(): string;
  /** Resolves once the agent logged "agent ready" (first heartbeat done, receiving). */
  ready: Promise<void>;
  /** Resolves with the exit code and signal when the process has exited. */
  exitStatus: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** With captureLogs: the parsed JSON log lines so far (non-JSON lines as {msg: line}); otherwise empty. */
  logs: Record<string, unknown>[];
  /** With captureLogs: whether a log line's msg equals (or matches) `msg`. */
  hasLog(msg: string | RegExp): boolean;
}

export const agentCacheDir = (dir: string): string => join(dir, 'cache');
export const agentStateDir = (dir: string): string => join(dir, 'state');
/** The bundled job script the `command` executor runs (compiled). */
export const jobScriptPath = (root = repoRoot()): string => join(root, 'dist/worker-agent/src/job-scripts/open-loras.js');

/** The agent's settings (names from worker-agent/src/config.ts AGENT_SETTINGS). */
export function agentEnv(l: AgentLaunch): Record<string, string> {
  const root = l.root ?? repoRoot();
  const tokenFile = join(l.dir, 'machine-token');
  return {
    [AGENT_SETTINGS.api]: l.apiUrl,
    [AGENT_SETTINGS.machineId]: l.machineId,
    [AGENT_SETTINGS.machineTokenFile]: tokenFile,
    [AGENT_SETTINGS.pool]: l.pool,
    [AGENT_SETTINGS.slots]: String(l.slots),
    [AGENT_SETTINGS.cacheDir]: agentCacheDir(l.dir),
    [AGENT_SETTINGS.cacheBudget]: String(l.budgetBytes),
    [AGENT_SETTINGS.stateDir]: agentStateDir(l.dir),
    [AGENT_SETTINGS.executor]: 'command',
    // --demo: the demo payload fields (sleep_ms, trace_file, ...) work; the production sample leaves them off.
    [AGENT_SETTINGS.executorCommand]: JSON.stringify([process.execPath, jobScriptPath(root), '--demo']),
    // The local fleet runs jobs as the developer's own user: a trusted single-tenant box, said explicitly.
    [AGENT_SETTINGS.executorTrustedSameUser]: 'true',
    [AGENT_SETTINGS.heartbeatSeconds]: String(l.heartbeatSeconds ?? 5),
    [AGENT_SETTINGS.dispatchLockSeconds]: String(l.dispatchLockSeconds ?? 60),
    [AGENT_SETTINGS.lockRenewSeconds]: String(l.lockRenewSeconds ?? 20),
    [AGENT_SETTINGS.drainGraceSeconds]: String(l.drainGraceSeconds ?? 10),
    [AGENT_SETTINGS.cancelGraceSeconds]: '3',
    [AGENT_SETTINGS.logLevel]: l.logLevel ?? 'info',
    [AGENT_SETTINGS.transport]: 'storage-queue',
    [AGENT_SETTINGS.storageConnection]: l.storageConnection,
    [AGENT_SETTINGS.storageQueuePrefix]: l.queuePrefix,
    ...l.env,
  };
}

/** The parent's environment minus the Functions app's settings and secrets (an agent only gets its own). */
function baseEnv(): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v === undefined || /^(AzureWebJobs|CosmosDb|COSMOS_|AUTH_|MACHINE_|LoraStorage|ServiceBus|SCHEDULER_|REAPER_|VITEST|NODE_OPTIONS)/.test(k)) continue;
    out[k] = v;
  }
  return out;
}

/** Starts one agent process (`node dist/cli/index.js agent`). The token goes to a 0600 file, not the environment. */
export function spawnAgent(l: AgentLaunch): AgentProcess {
  const root = l.root ?? repoRoot();
  mkdirSync(agentCacheDir(l.dir), { recursive: true });
  mkdirSync(agentStateDir(l.dir), { recursive: true });
  writeFileSync(join(l.dir, 'machine-token'), `${l.token}\n`, { mode: 0o600 });
  const proc = startProcess(`agent ${l.machineId}`, process.execPath, ['--enable-source-maps', join(root, 'dist/cli/index.js'), 'agent'], {
    cwd: root,
    env: { ...baseEnv(), ...agentEnv(l) },
  });
  let out = '';
  let log: WriteStream | undefined;
  if (l.logFile) log = createWriteStream(l.logFile, { flags: 'a' });
  const keep = (d: Buffer) => {
    out = (out + d.toString()).slice(-200_000);
    log?.write(d);
  };
  let resolveReady!: () => void;
  let rejectReady!: (err: Error) => void;
  const ready = new Promise<void>((res, rej) => {
    resolveReady = res;
    rejectReady = rej;
  });
  ready.catch(() => undefined); // observed by whoever awaits it
  let buf = '';
  const logs: Record<string, unknown>[] = [];
  let lineBuf = '';
  const capture = (text: string): void => {
    lineBuf += text;
    let i: number;
    while ((i = lineBuf.indexOf('\n')) >= 0) {
      const line = lineBuf.slice(0, i);
      lineBuf = lineBuf.slice(i + 1);
      try {
        logs.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        logs.push({ msg: line });
      }
    }
  };
  proc.child.stdout?.on('data', (d: Buffer) => {
    keep(d);
    const text = d.toString();
    if (l.captureLogs) capture(text);
    buf += text;
    if (/"msg":"agent ready"/.test(buf)) resolveReady();
    buf = buf.slice(-4000);
  });
  const exitStatus = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    if (proc.child.exitCode !== null || proc.child.signalCode !== null) resolve({ code: proc.child.exitCode, signal: proc.child.signalCode });
    else proc.child.once('exit', (code, signal) => resolve({ code, signal }));
  });
  proc.child.stderr?.on('data', keep);
  void proc.exited.then((code) => {
    rejectReady(new Error(`agent ${l.machineId} exited with ${code} before it was ready:\n${out.slice(-3000)}`));
    log?.end();
  });
  const hasLog = (msg: string | RegExp): boolean =>
    logs.some((x) => (typeof msg === 'string' ? x.msg === msg : msg.test(String(x.msg ?? ''))));
  return { ...proc, launch: l, output: () => out, ready, exitStatus, logs, hasLog };
}

/** Registers (or re-registers) a machine through the admin API and returns its machine token. */
export async function registerMachine(apiUrl: string, adminToken: string, m: { machine_id: string; pool: string; slots: number }): Promise<string> {
  const res = await fetch(`${apiUrl.replace(/\/+$/, '')}/machines`, {
    method: 'POST',
    headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
    body: JSON.stringify(m),
  });
  const body = (await res.json()) as { token?: string; error?: { message: string } };
  if (!res.ok || !body.token) throw new Error(`registering machine ${m.machine_id}: HTTP ${res.status} ${body.error?.message ?? ''}`);
  return body.token;
}

/** Every pid whose parent chain leads to `pid` (Linux /proc). Used to kill an agent the way systemd would. */
export function descendantPids(pid: number): number[] {
  let entries: string[];
  try {
    entries = readdirSync('/proc').filter((e) => /^\d+$/.test(e));
  } catch {
    return [];
  }
  const parent = new Map<number, number>();
  for (const e of entries) {
    try {
      const stat = readFileSync(`/proc/${e}/stat`, 'utf8');
      // pid (comm) state ppid ...: comm may contain spaces and parentheses; ppid follows the last ')'.
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      parent.set(Number(e), ppid);
    } catch {
      // exited meanwhile
    }
  }
  const out: number[] = [];
  const walk = (p: number) => {
    for (const [child, pp] of parent) {
      if (pp === p && !out.includes(child)) {
        out.push(child);
        walk(child);
      }
    }
  };
  walk(pid);
  return out;
}

export const DEFAULT_FLEET_BUDGET = '96MB';

/**
 * `npm start`'s fleet: `count` agents `local-gpu-1..N` in pool standard, each under `<stateDir>/fleet/<id>/` (cache,
 * state, machine token, agent.log). Registration happens through the public admin API with a dev admin token.
 */
export async function startFleet(opts: {
  stack: Stack;
  count: number;
  budget: string;
  stateDir: string;
  slots?: number;
  pool?: string;
  executor?: FleetExecutor;
}): Promise<Fleet> {
  const budgetBytes = parseBytes(opts.budget);
  if (budgetBytes === undefined) throw new Error(`--budget ${JSON.stringify(opts.budget)}: expected bytes or a size such as 96MB or 1GB`);
  const slots = opts.slots ?? 1;
  const pool = opts.pool ?? 'standard';
  const adminToken = await issueDevToken(opts.stack.settings.AUTH_DEV_SECRET!, 'local-fleet', 'admin');
  const executor = opts.executor ?? 'comfyui';
  const procs: AgentProcess[] = [];
  const comfy = new Map<string, ComfyUiProcess>();
  const stop = async () => {
    await Promise.all(procs.map((p) => p.stop(25_000)));
    await Promise.all([...comfy.values()].map((c) => c.stop(5_000)));
  };
  try {
    for (let i = 1; i <= opts.count; i++) {
      const machineId = `local-gpu-${i}`;
      const dir = join(opts.stateDir, 'fleet', machineId);
      mkdirSync(dir, { recursive: true });
      const token = await registerMachine(opts.stack.apiUrl, adminToken, { machine_id: machineId, pool, slots });
      let env: Record<string, string> | undefined;
      if (executor === 'comfyui') {
        const c = await startComfyUiDouble({ baseDir: join(dir, 'comfyui'), stepMs: 50, name: `comfyui ${machineId}` });
        comfy.set(machineId, c);
        env = comfyUiAgentEnv(c);
      }
      procs.push(
        spawnAgent({
          machineId,
          token,
          pool,
          slots,
          apiUrl: opts.stack.apiUrl,
          storageConnection: opts.stack.settings.LoraStorage!,
          queuePrefix: opts.stack.settings.DISPATCH_QUEUE_PREFIX ?? 'machine-',
          dir,
          budgetBytes,
          logFile: join(dir, 'agent.log'),
          env,
        }),
      );
    }
    await Promise.all(procs.map((p) => p.ready));
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    agents: procs.map((p) => {
      const c = comfy.get(p.launch.machineId);
      return {
        machineId: p.launch.machineId,
        pool,
        pid: p.pid,
        cacheDir: agentCacheDir(p.launch.dir),
        budgetBytes,
        executor,
        ...(c ? { comfyui: { url: c.url, pid: c.pid, outputDir: c.outputDir } } : {}),
      };
    }),
    stop,
  };
}

// Real agent processes for end-to-end and chaos tests: each registered through the public admin API, spawned exactly as
// `npm start` spawns them (local/agents.ts: `lora-router agent` + the bundled open-loras job script), killable with
// SIGKILL and restartable on the same cache/state directories (a machine that crashed and came back).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { agentCacheDir, agentStateDir, descendantPids, registerMachine, spawnAgent, type AgentLaunch, type AgentProcess } from '../../local/agents.js';
import type { TestHost } from './stack.js';

export interface TestAgentOptions {
  pool?: string;
  slots?: number;
  budgetBytes?: number;
  heartbeatSeconds?: number;
  dispatchLockSeconds?: number;
  lockRenewSeconds?: number;
  env?: Record<string, string>;
}

export class TestAgent {
  proc: AgentProcess | undefined;
  /** Every pid this machine's agent has had, oldest first. */
  readonly pids: number[] = [];
  /** Output of earlier (killed) processes, for failure messages. */
  private history = '';
  /** True between "agent ready" and the next kill/stop: the agent is receiving work. */
  ready = false;

  constructor(readonly launch: AgentLaunch) {}

  get machineId(): string {
    return this.launch.machineId;
  }
  get cacheDir(): string {
    return agentCacheDir(this.launch.dir);
  }
  get stateDir(): string {
    return agentStateDir(this.launch.dir);
  }
  get pid(): number | undefined {
    return this.alive ? this.proc!.pid : undefined;
  }
  get alive(): boolean {
    return Boolean(this.proc && this.proc.child.exitCode === null && this.proc.child.signalCode === null);
  }

  /** Spawns the agent (again) on the same directories and waits until it is receiving. */
  async start(waitReady = true): Promise<void> {
    if (this.alive) throw new Error(`agent ${this.machineId} is already running (pid ${this.proc!.pid})`);
    if (this.proc) this.history += this.proc.output();
    const proc = spawnAgent(this.launch);
    this.proc = proc;
    this.pids.push(proc.pid);
    void proc.ready.then(() => {
      if (this.proc === proc) this.ready = true;
    });
    if (waitReady) await proc.ready;
  }

  /**
   * kill -9 of the agent and of the job processes it started (they run in their own process group, so a plain kill of
   * the agent would leave them running; systemd's KillMode=control-group kills the whole unit like this).
   */
  async kill9(): Promise<void> {
    const p = this.proc;
    this.ready = false;
    if (!p || !this.alive) return;
    const children = descendantPids(p.pid);
    for (const pid of [p.pid, ...children]) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    await p.exited;
  }

  /** SIGTERM (drain), then SIGKILL after the grace period. */
  async stop(graceMs = 15_000): Promise<void> {
    this.ready = false;
    if (this.proc && this.alive) await this.proc.stop(graceMs);
  }

  output(): string {
    return this.history + (this.proc?.output() ?? '');
  }
}

export interface TestFleet {
  agents: TestAgent[];
  dir: string;
  byId(machineId: string): TestAgent;
  /** Adds one more machine (registered and started). */
  add(machineId: string, opts?: TestAgentOptions): Promise<TestAgent>;
  /** Logs of every agent, for a failing test's message. */
  logs(tail?: number): string;
  stop(): Promise<void>;
}

/**
 * Registers `count` machines `<prefix>-1..N` through POST /api/machines (admin) and starts one agent process each,
 * under a throwaway directory. Short heartbeats by default so tests run fast.
 */
export async function startTestFleet(
  t: TestHost,
  count: number,
  opts: TestAgentOptions & { prefix?: string; start?: boolean } = {},
): Promise<TestFleet> {
  const dir = mkdtempSync(join(tmpdir(), 'lora-router-fleet-'));
  const admin = await t.as('test-fleet-admin', 'admin');
  const adminToken = admin.options.token!;
  const prefix = opts.prefix ?? 'gpu';
  const agents: TestAgent[] = [];

  const make = async (machineId: string, o: TestAgentOptions): Promise<TestAgent> => {
    const pool = o.pool ?? 'standard';
    const slots = o.slots ?? 1;
    const token = await registerMachine(t.apiUrl, adminToken, { machine_id: machineId, pool, slots });
    const agent = new TestAgent({
      machineId,
      token,
      pool,
      slots,
      apiUrl: t.apiUrl,
      storageConnection: t.settings.LoraStorage!,
      queuePrefix: t.settings.DISPATCH_QUEUE_PREFIX!,
      dir: join(dir, machineId),
      budgetBytes: o.budgetBytes ?? 256 * 1024 * 1024,
      heartbeatSeconds: o.heartbeatSeconds ?? 1,
      dispatchLockSeconds: o.dispatchLockSeconds ?? 30,
      lockRenewSeconds: o.lockRenewSeconds ?? 5,
      drainGraceSeconds: 5,
      logLevel: process.env.AGENT_LOG_LEVEL ?? 'info',
      env: o.env,
    });
    agents.push(agent);
    return agent;
  };

  for (let i = 1; i <= count; i++) await make(`${prefix}-${i}`, opts);
  if (opts.start !== false) await Promise.all(agents.map((a) => a.start()));

  return {
    agents,
    dir,
    byId: (id) => {
      const a = agents.find((x) => x.machineId === id);
      if (!a) throw new Error(`no agent ${id}`);
      return a;
    },
    add: async (machineId, o = {}) => {
      const a = await make(machineId, { ...opts, ...o });
      await a.start();
      return a;
    },
    logs: (tail = 4000) => agents.map((a) => `--- ${a.machineId} ---\n${a.output().slice(-tail)}`).join('\n'),
    stop: async () => {
      await Promise.all(agents.map((a) => a.stop(8_000)));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

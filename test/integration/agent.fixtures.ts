// Fixtures for the agent integration tests: real safetensors LoRAs in Azurite + Cosmos records with their true sha256,
// and the agent as a real child process (dist/worker-agent/src/main.js) with its JSON log lines collected.
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync } from 'node:fs';
import { join } from 'node:path';
import { QueueServiceClient } from '@azure/storage-queue';
import type { JobEvent, JobEventList, JobView } from '../../contract/jobs.js';
import type { MachineView } from '../../contract/machines.js';
import { queueNameFor } from '../../dispatch/index.js';
import { SHARED_OWNER } from '../../functions/core/loras/records.js';
import { seedLora } from './jobs.fixtures.js';
import { makeSafetensors } from '../../functions/core/safetensors/generate.js';
import type { ApiClient } from '../../cli/api-client.js';
import type { TestHost } from '../support/stack.js';

export const root = process.cwd();
export const AGENT_MAIN = join(root, 'dist/worker-agent/src/main.js');
export const OPEN_LORAS = join(root, 'dist/worker-agent/src/job-scripts/open-loras.js');
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function until<T>(what: string, fn: () => Promise<T | undefined | null | false> | T | undefined | null | false, timeoutMs = 20_000, everyMs = 150): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (last error: ${(last as Error).message})` : ''}`);
    await sleep(everyMs);
  }
}

export interface SeededLora {
  kind: 'user' | 'shared';
  key: string;
  size: number;
  sha256: string;
  requirement: { type: 'user'; flat_file_id: string } | { type: 'shared'; filename: string };
}

/** A valid safetensors LoRA of about `dataBytes`, uploaded to its container with a `ready` record carrying its real sha256. */
export async function seedRealLora(t: TestHost, opts: { owner: string; dataBytes: number; filename?: string; seed?: number }): Promise<SeededLora> {
  const content = makeSafetensors({ dataBytes: opts.dataBytes, seed: opts.seed ?? 7 });
  const { key, doc } = await seedLora(t, { owner: opts.owner, content, filename: opts.filename });
  return {
    kind: doc.kind,
    key,
    size: content.length,
    sha256: doc.sha256,
    requirement: doc.kind === 'shared' ? { type: 'shared', filename: key } : { type: 'user', flat_file_id: key },
  };
}

export interface AgentProcess {
  proc: ChildProcess;
  /** Parsed JSON log lines (non-JSON lines are kept as {msg: line}). */
  logs: Record<string, unknown>[];
  stderr: string[];
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  exitInfo?: { code: number | null; signal: NodeJS.Signals | null };
  hasLog(msg: string | RegExp): boolean;
  stop(): Promise<void>;
}

export function spawnAgent(env: Record<string, string>): AgentProcess {
  const proc = spawn(process.execPath, ['--enable-source-maps', AGENT_MAIN], {
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: Record<string, unknown>[] = [];
  const stderr: string[] = [];
  let buf = '';
  proc.stdout!.on('data', (d: Buffer) => {
    buf += d.toString('utf8');
    let i: number;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      try {
        logs.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        logs.push({ msg: line });
      }
      if (process.env.AGENT_TEST_LOG) appendFileSync(process.env.AGENT_TEST_LOG, `${line}\n`);
    }
  });
  proc.stderr!.on('data', (d: Buffer) => stderr.push(d.toString('utf8')));
  const a: AgentProcess = {
    proc,
    logs,
    stderr,
    exited: new Promise((resolve) =>
      proc.once('exit', (code, signal) => {
        a.exitInfo = { code, signal };
        resolve({ code, signal });
      }),
    ),
    hasLog: (msg) => logs.some((l) => (typeof msg === 'string' ? l.msg === msg : msg.test(String(l.msg ?? '')))),
    stop: async () => {
      if (a.exitInfo) return;
      proc.kill('SIGKILL');
      await a.exited;
    },
  };
  return a;
}

export async function jobEvents(user: ApiClient, jobId: string): Promise<JobEvent[]> {
  const out: JobEvent[] = [];
  let after = 0;
  for (;;) {
    const page = await user.get<JobEventList>(`jobs/${jobId}/events?after=${after}`);
    out.push(...page.events);
    if (page.events.length === 0 || page.next_after === after) return out;
    after = page.next_after;
  }
}

export const logLines = (events: JobEvent[], stream?: string): string[] =>
  events.filter((e) => e.type === 'log' && (!stream || e.data.stream === stream)).flatMap((e) => (e.data.lines as string[]) ?? []);

export async function getJob(user: ApiClient, id: string): Promise<JobView> {
  return user.get<JobView>(`jobs/${id}`);
}

export async function machineView(admin: ApiClient, id: string): Promise<MachineView> {
  const { machines } = await admin.get<{ machines: MachineView[] }>('machines');
  const m = machines.find((x) => x.machine_id === id);
  if (!m) throw new Error(`machine ${id} not listed`);
  return m;
}

/** Messages in the machine's dispatch queue, visible or not (Storage counts invisible ones too). */
export async function queueDepth(t: TestHost, machineId: string): Promise<number> {
  const q = QueueServiceClient.fromConnectionString(t.settings.LoraStorage!).getQueueClient(queueNameFor(t.settings.DISPATCH_QUEUE_PREFIX!, machineId));
  return (await q.getProperties()).approximateMessagesCount ?? 0;
}

export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export { SHARED_OWNER };

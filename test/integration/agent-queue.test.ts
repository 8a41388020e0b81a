// Downloads that overlap GPU work (issue 14), end to end: a real agent child process with SLOTS=1 and QUEUE_DEPTH=1,
// the dev Functions host (intake places on events, scheduler timer, slot ledger), Azurite + cosmosdb-server, the real
// SQLite cache and the open-loras job script. The 1-slot machine is given a second job while its first runs; the agent
// claims it and downloads its LoRA at once, and runs it only once the first has ended.
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ApiClient } from '../../api-client/index.js';
import { startTestHost, type TestHost } from '../support/stack.js';
import { getJob, jobEvents, machineView, seedRealLora, spawnAgent, until, type AgentProcess, type SeededLora } from './agent.fixtures.js';

const MiB = 1024 * 1024;
const TENANT = 'queue-tenant';

let t: TestHost;
let admin: ApiClient;
let user: ApiClient;
let agent: AgentProcess | undefined;
let work: string;
let machineId: string;
let token: string;
let A: SeededLora;
let B: SeededLora;
const traceFile = () => join(work, 'trace.log');
const traceLines = (): string[] => (existsSync(traceFile()) ? readFileSync(traceFile(), 'utf8').trim().split('\n').filter(Boolean) : []);

async function submit(lora: SeededLora, payload: Record<string, unknown>): Promise<string> {
  const res = await user.post<{ job_id: string }>('jobs', {
    service_required: 'open-loras',
    payload: { ...payload, trace_file: traceFile() },
    requirements: { loras: [lora.requirement] },
  });
  return res.job_id;
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'agent-queue-it-'));
  t = await startTestHost({ SCHEDULER_SCHEDULE: '* * * * * *', REAPER_SCHEDULE: '*/5 * * * * *', CLAIM_TIMEOUT_SECONDS: '60' }, { timers: true });
  admin = await t.as('ops', 'admin');
  user = await t.as(TENANT);
  machineId = `gpu-q-${Date.now().toString(36)}`;
  token = (await admin.post<{ token: string }>('machines', { machine_id: machineId, pool: 'standard', slots: 1 })).token;
  [A, B] = await Promise.all([
    seedRealLora(t, { owner: TENANT, dataBytes: 2 * MiB, seed: 11 }),
    seedRealLora(t, { owner: TENANT, dataBytes: 3 * MiB, seed: 12 }),
  ]);
  agent = spawnAgent({
    machineId,
    token,
    pool: 'standard',
    slots: 1,
    apiUrl: t.apiUrl,
    storageConnection: t.settings.LoraStorage!,
    queuePrefix: t.settings.DISPATCH_QUEUE_PREFIX!,
    dir: work,
    budgetBytes: 64 * MiB,
    heartbeatSeconds: 1,
    lockRenewSeconds: 2,
    dispatchLockSeconds: 10,
    logLevel: 'debug',
    env: { QUEUE_DEPTH: '1' },
  });
  await until('agent heartbeat with its queue depth', async () => {
    const m = await machineView(admin, machineId).catch(() => undefined);
    return m?.live && m.queue_depth === 1 ? m : undefined;
  }, 30_000);
});

afterAll(async () => {
  await agent?.stop(2_000);
  await t?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('queued dispatch (SLOTS=1, QUEUE_DEPTH=1)', () => {
  it('downloads the next job’s LoRA while the slot is busy and runs it after the first job ends', async () => {
    const first = await submit(A, { sleep_ms: 8_000 });
    await until('first job running', async () => ((await getJob(user, first)).status === 'running' ? true : undefined), 30_000);
    const second = await submit(B, { sleep_ms: 100 });

    // The 1-slot machine takes the second job too (a queue position in its ledger) and fetches its LoRA at once.
    const bFile = join(work, 'cache', 'loras', 'user', `${B.key}.safetensors`);
    await until('second job’s LoRA downloaded', async () => (existsSync(bFile) && readFileSync(bFile).length === B.size ? true : undefined), 30_000);
    const [j1, j2] = await Promise.all([getJob(user, first), getJob(user, second)]);
    expect(j2.machine_id).toBe(machineId);
    // Downloaded while the first job still runs (its script has not written "done"), and not started itself.
    expect(j1.status).toBe('running');
    expect(traceLines().filter((l) => l.includes(' done'))).toEqual([]);
    expect(traceLines().some((l) => l.startsWith(`${second} `))).toBe(false);

    const done2 = await until('second job finished', async () => {
      const j = await getJob(user, second);
      return j.status === 'succeeded' || j.status === 'failed' ? j : undefined;
    }, 60_000);
    expect(done2.status).toBe('succeeded');
    expect((await getJob(user, first)).status).toBe('succeeded');

    // One slot: the second job's program started only after the first one's had ended.
    const order = traceLines()
      .map((l) => l.split(' '))
      .filter(([, , , what]) => what === 'start' || what === 'done')
      .map(([id, , , what]) => `${id === first ? 'first' : id === second ? 'second' : id} ${what}`);
    expect(order).toEqual(['first start', 'first done', 'second start', 'second done']);
    // Its LoRA was already there when it got its slot: the started event reports it downloaded for this job, before.
    const started = (await jobEvents(user, second)).find((e) => e.type === 'started')!;
    expect((started.data.cache as { missing_loras: string[] }).missing_loras).toEqual([B.key]);
  });
});

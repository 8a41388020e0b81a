// Queued jobs taken back (issue 14, item 2), end to end on the real stack: the dev Functions host (scheduler and reaper
// timers, slot ledger, epoch fencing), Azurite + cosmosdb-server, and real agent child processes (SLOTS=1,
// QUEUE_DEPTH=1) running the bundled open-loras job script, which appends one trace line per lifecycle step, so every
// execution of a job is counted.
//  a. A machine holding a running job and a queued one is killed with SIGKILL (agent and job program): the reaper
//     takes both back (epoch bumped) and both end succeeded on machine B, each executed to completion exactly once;
//     the queued one never started on A.
//  b. A queued job not started within QUEUE_WAIT_LIMIT_SECONDS of its claim (the run ahead overran) is handed back by
//     the agent (no attempt spent, epoch bumped) and runs once, on another machine.
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ApiClient } from '../../api-client/index.js';
import type { JobView } from '../../contract/jobs.js';
import { makeSafetensors } from '../../testkit/safetensors.js';
import { allEvents, FAST_SETTINGS, submitJob, TERMINAL, uploadUserLora, waitJob } from '../e2e/helpers.js';
import { startTestFleet, type TestAgent, type TestFleet } from '../support/test-agents.js';
import { startTestHost, type TestHost } from '../support/stack.js';
import { machineView, until } from './agent.fixtures.js';

const TENANT = 'takeback-user';
let t: TestHost;
let fleet: TestFleet;
let user: ApiClient;
let admin: ApiClient;
let traceDir: string;

beforeAll(async () => {
  t = await startTestHost({ ...FAST_SETTINGS, CLAIM_TIMEOUT_SECONDS: '60' }, { timers: true });
  fleet = await startTestFleet(t, 0, { prefix: 'qtb', slots: 1, dispatchLockSeconds: 10, lockRenewSeconds: 2 });
  user = await t.as(TENANT);
  admin = await t.as('takeback-ops', 'admin');
  traceDir = join(fleet.dir, 'traces');
  mkdirSync(traceDir, { recursive: true });
});

afterAll(async () => {
  if (process.env.TAKEBACK_DEBUG) console.log(`${t?.host.output().slice(-6000)}\n${fleet?.logs(6000)}`);
  await fleet?.stop();
  await t?.stop();
});

interface TraceLine {
  job: string;
  epoch: number;
  pid: number;
  what: string;
}
const readTrace = (path: string): TraceLine[] =>
  existsSync(path)
    ? readFileSync(path, 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((l) => {
          const [job, epoch, pid, what] = l.split(' ');
          return { job: job!, epoch: Number(epoch), pid: Number(pid), what: what! };
        })
    : [];

async function queuedMachine(id: string, pool: string, waitLimit: string): Promise<TestAgent> {
  const a = await fleet.add(id, { pool, slots: 1, env: { QUEUE_DEPTH: '1', QUEUE_WAIT_LIMIT_SECONDS: waitLimit } });
  await until(`${id} live with its queue depth`, async () => {
    const m = await machineView(admin, id).catch(() => undefined);
    return m?.live && m.queue_depth === 1 ? m : undefined;
  }, 30_000);
  return a;
}

/** Waits until `id` is claimed on `machine` and its LoRA file is in that machine's cache: queued there, not started. */
async function queuedOn(agent: TestAgent, id: string, loraKey: string, trace: string): Promise<JobView> {
  const file = join(agent.cacheDir, 'loras', 'user', `${loraKey}.safetensors`);
  const j = await until(`${id} queued on ${agent.machineId}`, async () => {
    const v = await waitJob(user, id, () => true);
    return v.status === 'running' && v.machine_id === agent.machineId && existsSync(file) ? v : undefined;
  }, 30_000);
  expect(readTrace(trace).filter((l) => l.job === id)).toEqual([]); // claimed and downloaded, never started
  return j;
}

/** One completed execution of the job program for this job, at its final epoch, whose pid the result names. */
async function ranOnce(trace: string, j: JobView): Promise<void> {
  const lines = readTrace(trace).filter((l) => l.job === j.job_id);
  const done = lines.filter((l) => l.what === 'done');
  expect(done, JSON.stringify(lines)).toHaveLength(1);
  expect(done[0]!.epoch).toBe(j.epoch);
  expect((j.result as { pid: number }).pid).toBe(done[0]!.pid);
  const events = await allEvents(user, j.job_id);
  expect(events.filter((e) => e.type === 'succeeded')).toHaveLength(1);
}

describe('a. a queued job taken back from a dead machine (SIGKILL)', () => {
  it('the reaper re-places the running and the queued job; both succeed on machine B, each executed once', async () => {
    const trace = join(traceDir, 'dead.log');
    const a = await queuedMachine('qtb-dead-a', 'qdead', '0'); // 0: no hand-back, only the reaper takes jobs back here
    const [l1, l2] = await Promise.all([
      uploadUserLora(t, user, TENANT, makeSafetensors({ dataBytes: 256 * 1024, seed: 51 }), 'dead-1.safetensors'),
      uploadUserLora(t, user, TENANT, makeSafetensors({ dataBytes: 384 * 1024, seed: 52 }), 'dead-2.safetensors'),
    ]);
    const running = await submitJob(user, { pool: 'qdead', user: [l1.key], payload: { sleep_ms: 12_000, trace_file: trace } });
    await until('the first job started on A', async () => (readTrace(trace).some((l) => l.job === running && l.what === 'start') ? true : undefined), 60_000);
    const queued = await submitJob(user, { pool: 'qdead', user: [l2.key], payload: { sleep_ms: 200, trace_file: trace } });
    const before = await queuedOn(a, queued, l2.key, trace);
    const runningBefore = await waitJob(user, running, () => true);
    expect(runningBefore).toMatchObject({ status: 'running', machine_id: a.machineId });
    expect(readTrace(trace).some((l) => l.job === running && l.what === 'done')).toBe(false);

    await a.kill9();
    const b = await fleet.add('qtb-dead-b', { pool: 'qdead', slots: 2 });

    const [q, r] = await Promise.all(
      [queued, running].map((id) => waitJob(user, id, (v) => TERMINAL.has(v.status), 120_000, 300)),
    );
    expect(q, fleet.logs(3000)).toMatchObject({ status: 'succeeded', machine_id: b.machineId });
    expect(r, fleet.logs(3000)).toMatchObject({ status: 'succeeded', machine_id: b.machineId });
    // Taken back by the reaper (machine lost: epoch bumped, attempt spent), then assigned to B (epoch bumped again).
    expect(q.epoch).toBeGreaterThanOrEqual(before.epoch + 2);
    expect(q.attempt).toBe(before.attempt + 1);
    await ranOnce(trace, q);
    await ranOnce(trace, r);
    // The queued job's only execution is B's; the running job's A execution was killed before it could finish.
    expect(readTrace(trace).filter((l) => l.job === queued && l.what === 'start')).toHaveLength(1);
    expect(readTrace(trace).filter((l) => l.job === running && l.what === 'start' && l.epoch === runningBefore.epoch)).toHaveLength(1);
  }, 240_000);
});

describe('b. a queued job that waits too long is handed back by its agent', () => {
  it('is re-placed on another machine without spending an attempt and runs once; the job ahead is untouched', async () => {
    const trace = join(traceDir, 'slow.log');
    // The bound leaves the test time to see the job queued on A before it is handed back (a loaded box polls slowly;
    // once handed back, A is avoided and the job would wait for B instead of showing up queued on A again).
    const a = await queuedMachine('qtb-slow-a', 'qslow', '15');
    // Machine B is up from the start (an agent takes a while to start on a busy box) but drained by an admin, so both
    // jobs go to A; it is undrained once the second job is queued there.
    const b = await fleet.add('qtb-slow-b', { pool: 'qslow', slots: 1 });
    expect((await admin.post<{ admin_drained: boolean }>(`machines/${b.machineId}/drain`)).admin_drained).toBe(true);
    const [l1, l2] = await Promise.all([
      uploadUserLora(t, user, TENANT, makeSafetensors({ dataBytes: 256 * 1024, seed: 61 }), 'slow-1.safetensors'),
      uploadUserLora(t, user, TENANT, makeSafetensors({ dataBytes: 384 * 1024, seed: 62 }), 'slow-2.safetensors'),
    ]);
    // The run ahead overruns (45 s against a 15 s bound), so the queued job is not started within the bound.
    const ahead = await submitJob(user, { pool: 'qslow', user: [l1.key], payload: { sleep_ms: 45_000, trace_file: trace } });
    await until('the first job started on A', async () => (readTrace(trace).some((l) => l.job === ahead && l.what === 'start') ? true : undefined), 60_000);
    const queued = await submitJob(user, { pool: 'qslow', user: [l2.key], payload: { sleep_ms: 200, trace_file: trace } });
    const before = await queuedOn(a, queued, l2.key, trace);
    expect((await admin.post<{ admin_drained: boolean }>(`machines/${b.machineId}/undrain`)).admin_drained).toBe(false);

    const q = await waitJob(user, queued, (v) => TERMINAL.has(v.status), 90_000, 300);
    expect(q, fleet.logs(3000)).toMatchObject({ status: 'succeeded', machine_id: b.machineId, attempt: before.attempt });
    expect(q.epoch).toBeGreaterThanOrEqual(before.epoch + 2);
    const events = await allEvents(user, queued);
    const handedBack = events.filter((e) => e.type === 'failed' && e.data.outcome === 'handed_back');
    // Until B is undrained the job may come back to A once more (the only machine open in its pool) and be handed back
    // again.
    expect(handedBack.length).toBeGreaterThanOrEqual(1);
    for (const e of handedBack) expect(String(e.data.reason)).toMatch(/QUEUE_WAIT_LIMIT_SECONDS/);
    expect(events.filter((e) => e.type === 'started')).toHaveLength(1);
    await ranOnce(trace, q);
    expect(readTrace(trace).filter((l) => l.job === queued && l.what === 'start')).toHaveLength(1);

    const r = await waitJob(user, ahead, (v) => TERMINAL.has(v.status), 60_000, 300);
    expect(r).toMatchObject({ status: 'succeeded', machine_id: a.machineId, attempt: 1 });
    await ranOnce(trace, r);
  }, 240_000);
});

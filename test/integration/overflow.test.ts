// Cross-pool overflow (POOL_OVERFLOW) on the real local stack: the dev Functions host, Azurite + cosmosdb-server, and
// real agents as child processes (local/agents.ts) running the open-loras job script. Pool A has one machine, kept
// busy by a long job; pool B has one idle machine.
//   on  (POOL_OVERFLOW=A>B, threshold 30 s; timers off, so only intake and heartbeats place): a job submitted to A,
//       whose expected wait is 60 s (one slot busy, one job pending, 30 s run time), is placed on B at intake and
//       says why; a second one waits while B is busy and overflows when B's job ends (the full pass a freed slot runs,
//       the timer's own code path).
//   off (no POOL_OVERFLOW; timer every second): the job waits in A while B idles, and runs in A once A frees.
//   bad POOL_OVERFLOW: the host refuses to start, naming the setting.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ApiClient } from '../../api-client/index.js';
import type { JobView } from '../../contract/jobs.js';
import { startTestHost, type TestHost } from '../support/stack.js';
import { getJob, machineView, sleep, spawnAgent, until, type AgentProcess } from './agent.fixtures.js';

const MiB = 1024 * 1024;
/** Waits are generous (not timed assertions): the machine is shared and can be very slow. */
const WAIT = 120_000;
const A = 'ovfl-a';
const B = 'ovfl-b';

interface Setup {
  t: TestHost;
  admin: ApiClient;
  user: ApiClient;
  agents: AgentProcess[];
  work: string;
  machineA: string;
  machineB: string;
}

async function setUp(settings: Record<string, string>, timers: boolean): Promise<Setup> {
  const work = mkdtempSync(join(tmpdir(), 'overflow-'));
  const t = await startTestHost(settings, { timers });
  const admin = await t.as('ops', 'admin');
  const user = await t.as('overflow-tenant');
  const stamp = Date.now().toString(36);
  const agents: AgentProcess[] = [];
  const ids: string[] = [];
  for (const pool of [A, B]) {
    const machineId = `gpu-${pool}-${stamp}`;
    const { token } = await admin.post<{ token: string }>('machines', { machine_id: machineId, pool, slots: 1 });
    agents.push(
      spawnAgent({
        machineId,
        token,
        pool,
        slots: 1,
        apiUrl: t.apiUrl,
        storageConnection: t.settings.LoraStorage!,
        queuePrefix: t.settings.DISPATCH_QUEUE_PREFIX!,
        dir: join(work, machineId),
        budgetBytes: 64 * MiB,
        heartbeatSeconds: 1,
      }),
    );
    ids.push(machineId);
  }
  for (const a of agents) await a.ready;
  for (const id of ids) await until(`${id} live`, async () => (await machineView(admin, id)).live, WAIT);
  return { t, admin, user, agents, work, machineA: ids[0]!, machineB: ids[1]! };
}

async function tearDown(s: Setup | undefined): Promise<void> {
  if (!s) return;
  for (const a of s.agents) await a.stop();
  await s.t.stop();
  rmSync(s.work, { recursive: true, force: true });
}

const submit = async (user: ApiClient, pool: string, sleepMs: number) =>
  user.post<{ job_id: string; status: string }>('jobs', { service_required: 'open-loras', pool, payload: { sleep_ms: sleepMs }, requirements: { loras: [] } });

async function runningOn(s: Setup, jobId: string, machineId: string): Promise<JobView> {
  return until(`${jobId} running on ${machineId}`, async () => {
    const j = await getJob(s.user, jobId);
    return j.status === 'running' && j.machine_id === machineId ? j : undefined;
  }, WAIT);
}

/** GET /api/pools' estimated wait of A and B. */
async function poolWaits(s: Setup): Promise<Record<string, number | null>> {
  const { pools } = await s.admin.get<{ pools: { pool: string; estimated_wait_seconds: number | null }[] }>('pools');
  return Object.fromEntries(pools.filter((p) => p.pool === A || p.pool === B).map((p) => [p.pool, p.estimated_wait_seconds]));
}

/**
 * Both machines run nothing: no active job on them, and their agents' last heartbeats list none (a cancelled job of an
 * earlier test has stopped; until then the scheduler counts its slot busy, and would rightly overflow).
 */
async function idle(s: Setup): Promise<void> {
  for (const id of [s.machineA, s.machineB]) {
    await until(`${id} idle`, async () => {
      const { resource } = await s.t.clients.cosmosContainers.machines.item(id, id).read<{ running_jobs: unknown[] }>();
      return (await machineView(s.admin, id)).running_jobs === 0 && resource?.running_jobs.length === 0;
    }, WAIT);
  }
}

describe('cross-pool overflow on (POOL_OVERFLOW=A>B, threshold 30 s)', () => {
  let s: Setup;
  beforeAll(async () => {
    s = await setUp({ POOL_OVERFLOW: `${A}>${B}`, POOL_OVERFLOW_THRESHOLD_SECONDS: '30' }, false);
  }, 300_000);
  afterAll(() => tearDown(s), 120_000);

  it('a job of the overloaded pool runs on the idle pool, and its view says why', async () => {
    const long = await submit(s.user, A, 600_000);
    expect(long.status).toBe('assigned'); // intake placed it at home: A's slot was free
    await runningOn(s, long.job_id, s.machineA);
    expect((await getJob(s.user, long.job_id)).overflow).toBeNull();

    // What an operator sees now: A's one slot busy, nothing pending: a job submitted now waits one run (30 s); B is idle.
    expect(await poolWaits(s)).toEqual({ [A]: 30, [B]: 0 });

    // Intake: with the job stored (pending), A's expected wait is 60 s (it is not a slot ahead of itself, but the pool
    // estimate counts every pending job, as GET /api/pools does): over 30 s; B's is 0 s: the job goes to B at once.
    const over = await submit(s.user, A, 3_000);
    expect(over.status).toBe('assigned');
    const placed = await getJob(s.user, over.job_id);
    expect(placed).toMatchObject({ pool: A, machine_id: s.machineB, overflow: { from_pool: A, to_pool: B, from_wait_seconds: 60, to_wait_seconds: 0, threshold_seconds: 30 } });
    await until('overflowed job done', async () => (await getJob(s.user, over.job_id)).status === 'succeeded', WAIT);
    const done = await getJob(s.user, over.job_id);
    expect(done.machine_id).toBe(s.machineB);
    expect(done.overflow?.to_pool).toBe(B);
    await s.user.delete(`jobs/${long.job_id}`);
  }, 600_000);

  it('a job that finds the overflow pool busy waits, then overflows when its slot frees (the full pass)', async () => {
    await idle(s);
    const long = await submit(s.user, A, 600_000);
    await runningOn(s, long.job_id, s.machineA);
    const onB = await submit(s.user, A, 4_000);
    expect((await getJob(s.user, onB.job_id)).machine_id).toBe(s.machineB);
    await runningOn(s, onB.job_id, s.machineB);
    // B is busy now (its wait, 30 s, is not over the threshold, but it has no free slot): the next job waits.
    const next = await submit(s.user, A, 50);
    expect(next.status).toBe('pending');
    expect(await getJob(s.user, next.job_id)).toMatchObject({ status: 'pending', machine_id: null, overflow: null });
    // The estimates the overflow compares (as the operator sees them): A over the threshold (no job succeeded on A's
    // machine: 30 s a run); B under it (one run of B's own mean run time, a few seconds from the first test's job,
    // which counts for B where it ran, not A where it was submitted), so B qualifies but has no free slot.
    const waits = await poolWaits(s);
    expect(waits[A]).toBe(60);
    expect(waits[B]).toBeGreaterThan(0);
    expect(waits[B]).toBeLessThanOrEqual(30);
    // B's job ends; B's agent beats at once; the freed slot runs a full pass over all pending jobs (timers are off).
    const ran = await until('next job done', async () => {
      const j = await getJob(s.user, next.job_id);
      return j.status === 'succeeded' ? j : undefined;
    }, WAIT);
    expect(ran).toMatchObject({ machine_id: s.machineB, overflow: { from_pool: A, to_pool: B, from_wait_seconds: 60, to_wait_seconds: 0, threshold_seconds: 30 } });
    expect((await getJob(s.user, long.job_id)).status).toBe('running'); // A never freed: B is where it could run
    await s.user.delete(`jobs/${long.job_id}`);
  }, 600_000);
});

describe('cross-pool overflow off (no POOL_OVERFLOW)', () => {
  let s: Setup;
  beforeAll(async () => {
    s = await setUp({ SCHEDULER_SCHEDULE: '* * * * * *', REAPER_SCHEDULE: '* * * * * *' }, true);
  }, 300_000);
  afterAll(() => tearDown(s), 120_000);

  it('the job waits in its own pool while the other idles, and runs there once a slot frees', async () => {
    const long = await submit(s.user, A, 600_000);
    await runningOn(s, long.job_id, s.machineA);
    const waiting = await submit(s.user, A, 50);
    expect(waiting.status).toBe('pending');
    // Several timer passes (one a second) and B heartbeats meanwhile: the job is never sent to B.
    const beatsBefore = (await machineView(s.admin, s.machineB)).last_heartbeat_at;
    await sleep(5_000);
    expect((await machineView(s.admin, s.machineB)).last_heartbeat_at).not.toBe(beatsBefore);
    expect(await getJob(s.user, waiting.job_id)).toMatchObject({ status: 'pending', machine_id: null, overflow: null });
    expect((await machineView(s.admin, s.machineB)).running_jobs).toBe(0);
    await s.user.delete(`jobs/${long.job_id}`);
    const ran = await until('waiting job done', async () => {
      const j = await getJob(s.user, waiting.job_id);
      return j.status === 'succeeded' ? j : undefined;
    }, WAIT);
    expect(ran).toMatchObject({ machine_id: s.machineA, overflow: null });
  }, 600_000);
});

describe('a bad POOL_OVERFLOW', () => {
  it.each([
    ['ovfl-a>ovfl-a', /POOL_OVERFLOW: pool ovfl-a lists itself/],
    ['{"ovfl-a":"ovfl-b"}', /POOL_OVERFLOW: pool ovfl-a: must map each pool to a list of pool names/],
  ])('%s: the host refuses to start, naming the setting', async (value, message) => {
    await expect(startTestHost({ POOL_OVERFLOW: value }, { timers: false })).rejects.toThrow(message);
  }, 120_000);
});

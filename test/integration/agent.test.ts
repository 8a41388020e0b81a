// The worker agent end to end: a real agent child process (`lora-router agent`, spawned by local/agents.ts) on the storage-queue
// transport, the real dev Functions host with its scheduler timer, Azurite + cosmosdb-server, a real SQLite cache and
// the bundled open-loras job script as the command executor. One agent serves the whole file, in this order:
// single-flight download → cache hit → stale dispatch dropped → failing job → cancel (SIGTERM, then SIGKILL) →
// cache full → heartbeats → SIGTERM drain (one job finishes, one is handed back, exit 0).
import { mkdtempSync, readFileSync, rmSync, existsSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ApiClient } from '../../api-client/index.js';
import { createDispatchSender } from '../../dispatch/index.js';
import { dispatchSenderOptions } from '../../functions/adapters/dispatch-sender.js';
import { startTestHost, type TestHost } from '../support/stack.js';
import {
  SHARED_OWNER,
  getJob,
  jobEvents,
  logLines,
  machineView,
  pidAlive,
  queueDepth,
  seedRealLora,
  sleep,
  spawnAgent,
  until,
  type AgentProcess,
  type SeededLora,
} from './agent.fixtures.js';

const MiB = 1024 * 1024;
const TENANT = 'agent-tenant';
const BUDGET = 14 * MiB;
const CANCEL_GRACE_S = 1;
const DRAIN_GRACE_S = 4;

let t: TestHost;
let admin: ApiClient;
let user: ApiClient;
let machineId: string;
let token: string;
let agent: AgentProcess;
let work: string;
let cacheDir: string;
let L1: SeededLora; // 6 MiB user LoRA shared by the first jobs
let PIN: SeededLora; // 4 MiB shared LoRA, pinned on the agent
let BIG: SeededLora; // 11 MiB user LoRA: 4 MiB pinned + 11 MiB > 14 MiB budget, whatever is evicted
const traceFile = () => join(work, 'trace.log');
const traces = (): string[][] => (existsSync(traceFile()) ? readFileSync(traceFile(), 'utf8').trim().split('\n').filter(Boolean).map((l) => l.split(' ')) : []);

async function submit(loras: SeededLora[], payload: Record<string, unknown> = {}): Promise<string> {
  const res = await user.post<{ job_id: string }>('jobs', {
    service_required: 'open-loras',
    payload,
    requirements: { loras: loras.map((l) => l.requirement) },
  });
  return res.job_id;
}

async function waitStatus(id: string, statuses: string[], timeoutMs = 20_000) {
  let last: unknown;
  try {
    return await until(`job ${id} to reach ${statuses.join('|')}`, async () => {
      const j = await getJob(user, id);
      last = j;
      return statuses.includes(j.status) ? j : undefined;
    }, timeoutMs);
  } catch (err) {
    const m = await machineView(admin, machineId).catch(() => undefined);
    if (process.env.AGENT_TEST_LOG) writeFileSync(`${process.env.AGENT_TEST_LOG}.host`, t.host.output());
    throw new Error(`${(err as Error).message}; job: ${JSON.stringify(last)}; machine: ${JSON.stringify(m)}`);
  }
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'agent-it-'));
  cacheDir = join(work, 'cache');
  t = await startTestHost({ SCHEDULER_SCHEDULE: '* * * * * *', REAPER_SCHEDULE: '* * * * * *', SCHEDULER_POLICY: 'adr010', CLAIM_TIMEOUT_SECONDS: '60' }, { timers: true });
  admin = await t.as('ops', 'admin');
  user = await t.as(TENANT);
  machineId = `gpu-${Date.now().toString(36)}`;
  token = (await admin.post<{ token: string }>('machines', { machine_id: machineId, pool: 'standard', slots: 2 })).token;
  [L1, PIN, BIG] = await Promise.all([
    seedRealLora(t, { owner: TENANT, dataBytes: 6 * MiB, seed: 1 }),
    seedRealLora(t, { owner: SHARED_OWNER, dataBytes: 4 * MiB, filename: `base-style-${Date.now().toString(36)}.safetensors`, seed: 2 }),
    seedRealLora(t, { owner: TENANT, dataBytes: 11 * MiB, seed: 3 }),
  ]);
});

afterAll(async () => {
  await agent?.stop(2_000);
  await t?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

function startAgent(): AgentProcess {
  return spawnAgent({
    machineId,
    token,
    pool: 'standard',
    slots: 2,
    apiUrl: t.apiUrl,
    storageConnection: t.settings.LoraStorage!,
    queuePrefix: t.settings.DISPATCH_QUEUE_PREFIX!,
    dir: work, // cache/ (= cacheDir) and state/ below it
    budgetBytes: BUDGET,
    heartbeatSeconds: 1,
    lockRenewSeconds: 2,
    dispatchLockSeconds: 10,
    drainGraceSeconds: DRAIN_GRACE_S,
    logLevel: 'debug',
    env: { PINNED_LORAS: PIN.key, CANCEL_GRACE_SECONDS: String(CANCEL_GRACE_S) },
  });
}

describe('worker agent (real child process, storage-queue transport)', () => {
  it('runs two jobs that need one LoRA with a single download, reporting logs, result and cache outcome', async () => {
    // Both jobs are dispatched before the agent starts, so it receives them in one batch and acquires concurrently.
    const beat = () => fetch(`${t.apiUrl}/machines/${machineId}/heartbeat`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        pool: 'standard',
        slots: 2,
        running_jobs: [],
        cached_loras: { user: [], shared: [] },
        cache: { budget_bytes: BUDGET, used_bytes: 0, free_disk_bytes: 10 * 1024 * MiB, counters: { hits: 0, misses: 0, downloads: 0, bytes_downloaded: 0, evictions: 0, thrash: 0 } },
        draining: false,
        agent_version: 'test',
      }),
    });
    await beat(); // live for the scheduler until the agent's own heartbeats take over
    const j1 = await submit([L1], { sleep_ms: 400, lines: 3 });
    const j2 = await submit([L1], { sleep_ms: 400 });
    await waitStatus(j1, ['assigned']);
    await waitStatus(j2, ['assigned']);
    expect(await queueDepth(t, machineId)).toBe(2);

    await beat();
    agent = startAgent();
    const [v1, v2] = await Promise.all([waitStatus(j1, ['succeeded', 'failed'], 30_000), waitStatus(j2, ['succeeded', 'failed'], 30_000)]);
    expect([v1.status, v2.status, v1.error, v2.error]).toEqual(['succeeded', 'succeeded', null, null]);
    expect(v1.machine_id).toBe(machineId);
    // Claim (slot taken) ≤ the run's start (the agent's `started` report, after the download) ≤ the outcome.
    for (const v of [v1, v2]) {
      const [claimed, started, finished] = [v.claimed_at, v.started_at, v.finished_at].map((x) => Date.parse(x ?? ''));
      expect([claimed, started, finished].every(Number.isFinite), JSON.stringify(v)).toBe(true);
      expect(claimed).toBeLessThanOrEqual(started!);
      expect(started).toBeLessThanOrEqual(finished!);
    }

    // The job script really opened the file: its result names the LoRA with the tensors it found.
    const result = v1.result as { opened: { key: string; tensors: number; size_bytes: number }[] };
    expect(result.opened).toHaveLength(1);
    expect(result.opened[0]!.key).toBe(L1.key);
    expect(result.opened[0]!.size_bytes).toBe(L1.size);
    expect(result.opened[0]!.tensors).toBeGreaterThan(0);

    // stdout lines became log events; the started event tells both were misses served by one download.
    const ev1 = await jobEvents(user, j1);
    const out = logLines(ev1, 'stdout');
    expect(out.some((l) => l.startsWith(`open-loras: opened user ${L1.key}:`))).toBe(true);
    expect(out).toContain('open-loras: line 3');
    expect(out).toContain('open-loras: done');
    expect(ev1.some((e) => e.type === 'progress')).toBe(true);
    for (const id of [j1, j2]) {
      const started = (await jobEvents(user, id)).find((e) => e.type === 'started')!;
      expect((started.data.cache as { missing_loras: string[] }).missing_loras).toEqual([L1.key]);
    }

    // One download for two misses: the heartbeat's counters say so.
    const m = await until('counters in the heartbeat', async () => {
      const v = await machineView(admin, machineId);
      return v.cache && v.cache.counters.misses === 2 ? v : undefined;
    });
    expect(m.cache!.counters.downloads).toBe(1);
    expect(m.cache!.counters.bytes_downloaded).toBe(L1.size);
    expect(m.cache!.counters.hits).toBe(0);
    expect(m.cached_user_loras).toBe(1);
    expect(readFileSync(join(cacheDir, 'loras', 'user', `${L1.key}.safetensors`)).length).toBe(L1.size);
    // Both messages were completed once the outcomes were recorded.
    await until('queue empty', async () => (await queueDepth(t, machineId)) === 0, 5_000);
  });

  it('serves a second job from the cache and completes its message only after the outcome is recorded', async () => {
    const j3 = await submit([L1], { sleep_ms: 2500 });
    await waitStatus(j3, ['running']);
    // Running: the message is still in the queue (invisible, lock renewed), not completed early.
    expect(await queueDepth(t, machineId)).toBe(1);
    await sleep(1200);
    expect(await queueDepth(t, machineId)).toBe(1);
    const done = await waitStatus(j3, ['succeeded', 'failed']);
    expect(done.status).toBe('succeeded');
    await until('message completed', async () => (await queueDepth(t, machineId)) === 0, 5_000);

    const started = (await jobEvents(user, j3)).find((e) => e.type === 'started')!;
    expect(started.data.cache).toMatchObject({ hit_loras: [L1.key], missing_loras: [], bytes_downloaded: 0 });
    const m = await until('hit counted', async () => {
      const v = await machineView(admin, machineId);
      return v.cache?.counters.hits === 1 ? v : undefined;
    });
    expect(m.cache!.counters.downloads).toBe(1);
    expect(m.cache!.counters.misses).toBe(2);
  });

  it('drops a dispatch whose claim gets 409 (stale epoch) without running anything', async () => {
    const jobs = await user.get<{ jobs: { job_id: string; status: string; epoch: number }[] }>('jobs?status=succeeded');
    const old = jobs.jobs[0]!;
    const before = (await jobEvents(user, old.job_id)).length;
    const dropsBefore = agent.logs.filter((l) => l.msg === 'claim rejected; dropping the dispatch').length;
    const sender = createDispatchSender(dispatchSenderOptions(t.clients));
    await sender.send(machineId, { job_id: old.job_id, epoch: old.epoch });
    await until('stale dispatch dropped', () => agent.logs.filter((l) => l.msg === 'claim rejected; dropping the dispatch').length > dropsBefore);
    await until('queue empty', async () => (await queueDepth(t, machineId)) === 0, 5_000);
    expect((await getJob(user, old.job_id)).status).toBe('succeeded');
    expect((await jobEvents(user, old.job_id)).length).toBe(before);
  });

  it('reports a failing command as failed with its exit code and stderr as the reason', async () => {
    const j = await submit([L1], { fail: 'boom on purpose' });
    const v = await waitStatus(j, ['failed', 'succeeded']);
    expect(v.status).toBe('failed');
    expect(v.error).toMatch(/exit code 3/);
    expect(v.error).toMatch(/boom on purpose/);
    expect(v.attempt).toBe(1); // the job's own failure is not retried
    expect(logLines(await jobEvents(user, j), 'stderr')).toContain('open-loras: boom on purpose');
  });

  it('cancels a running job: SIGTERM first, SIGKILL after the grace period when it ignores SIGTERM', async () => {
    const j = await submit([L1], { sleep_ms: 60_000, ignore_sigterm: true, trace_file: traceFile() });
    await waitStatus(j, ['running']);
    const opened = await until('job script opened its LoRAs', () => traces().find((x) => x[0] === j && x[3] === 'opened'));
    const pid = Number(opened[2]);
    expect(pidAlive(pid)).toBe(true);
    await user.delete(`jobs/${j}`);
    await until('SIGTERM delivered', () => traces().some((x) => x[0] === j && x[3] === 'sigterm'), 10_000, 50);
    const termAt = Date.now();
    expect(pidAlive(pid)).toBe(true); // it ignores SIGTERM...
    await until('job process killed', () => !pidAlive(pid), 10_000, 50);
    const killedAfter = Date.now() - termAt;
    expect(killedAfter).toBeGreaterThanOrEqual(CANCEL_GRACE_S * 1000 - 300); // ...until SIGKILL after the grace period
    expect(killedAfter).toBeLessThan(CANCEL_GRACE_S * 1000 + 3000);
    expect(agent.hasLog('executor: job ignored SIGTERM; SIGKILL')).toBe(true);
    expect((await getJob(user, j)).status).toBe('cancelled');
    // The slot and the LoRA are free again: the next job runs.
    const next = await submit([L1]);
    expect((await waitStatus(next, ['succeeded', 'failed'])).status).toBe('succeeded');
  });

  it('fails the attempt with a clear reason when pinned files leave no room in the budget', async () => {
    const pinJob = await submit([PIN]);
    expect((await waitStatus(pinJob, ['succeeded', 'failed'])).status).toBe('succeeded');
    const j = await submit([BIG]);
    const failedEvent = await until('failed event', async () => (await jobEvents(user, j)).find((e) => e.type === 'failed'));
    expect(failedEvent.data.reason).toMatch(/^LoRA cache full on this machine: cache full: need 11(\.\d)? MiB, budget 14(\.0)? MiB, 4(\.\d)? MiB pinned or in use/);
    expect(failedEvent.data.retryable).toBe(true);
    await user.delete(`jobs/${j}`).catch(() => undefined); // stop its retries
    expect(existsSync(join(cacheDir, 'loras', 'user', `${BIG.key}.safetensors`))).toBe(false);
    expect(existsSync(join(cacheDir, 'loras', 'shared', PIN.key))).toBe(true);
    const m = await machineView(admin, machineId);
    expect(m.cache!.used_bytes).toBeLessThanOrEqual(BUDGET);
    expect(m.cache!.used_bytes).toBe(L1.size + PIN.size);
  });

  it('heartbeats at the configured period with the inventory and counters', async () => {
    const seen: number[] = [];
    let last: string | null = null;
    const until_ = Date.now() + 4_200;
    let view = await machineView(admin, machineId);
    while (Date.now() < until_) {
      view = await machineView(admin, machineId);
      if (view.last_heartbeat_at && view.last_heartbeat_at !== last) {
        last = view.last_heartbeat_at;
        seen.push(Date.parse(last));
      }
      await sleep(100);
    }
    expect(seen.length).toBeGreaterThanOrEqual(3);
    const gaps = seen.slice(1).map((s, i) => s - seen[i]!);
    for (const g of gaps) {
      expect(g).toBeGreaterThan(600);
      expect(g).toBeLessThan(2000);
    }
    expect(view.live).toBe(true);
    expect(view.draining).toBe(false);
    expect(view.cached_user_loras).toBe(1);
    expect(view.cached_shared_loras).toBe(1);
    expect(view.cache!.budget_bytes).toBe(BUDGET);
    expect(Object.keys(view.cache!.counters).sort()).toEqual(['bytes_downloaded', 'downloads', 'evictions', 'hits', 'misses', 'thrash']);
    expect(view.cache!.counters.downloads).toBe(2); // L1 and PIN; BIG never started
  });

  it('drains on SIGTERM: takes no new work, lets a short job finish, hands a long one back, exits 0', async () => {
    const short = await submit([L1], { sleep_ms: 2000 });
    const long = await submit([L1], { sleep_ms: 120_000, trace_file: traceFile() });
    await waitStatus(short, ['running']);
    await waitStatus(long, ['running']);
    const longPid = Number((await until('long job opened', () => traces().find((x) => x[0] === long && x[3] === 'opened')))[2]);

    const t0 = Date.now();
    agent.child.kill('SIGTERM');
    await until('agent draining', async () => (await machineView(admin, machineId)).draining, 5_000, 100);
    const late = await submit([L1]); // arrives while draining: must not run here
    const { code, signal } = await agent.exitStatus;
    const took = Date.now() - t0;
    expect({ code, signal }).toEqual({ code: 0, signal: null });
    expect(took).toBeGreaterThanOrEqual(DRAIN_GRACE_S * 1000 - 500);
    expect(took).toBeLessThan(DRAIN_GRACE_S * 1000 + 15_000);

    expect((await getJob(user, short)).status).toBe('succeeded');
    const handedBack = (await jobEvents(user, long)).find((e) => e.type === 'failed');
    expect(handedBack?.data).toMatchObject({ reason: 'agent shutting down', retryable: true, handback: true, outcome: 'handed_back' });
    const lv = await getJob(user, long);
    expect(['pending', 'assigned']).toContain(lv.status);
    expect(lv.attempt).toBe(1); // a drain hand-back spends no attempt
    expect(lv).toMatchObject({ claimed_at: null, started_at: null }); // the handed-back attempt's times are cleared
    expect(traces().some((x) => x[0] === long && x[3] === 'sigterm')).toBe(true);
    expect(pidAlive(longPid)).toBe(false);
    const lateView = await getJob(user, late);
    expect(lateView.started_at).toBeNull();
    expect(['pending', 'assigned']).toContain(lateView.status);
    expect(agent.hasLog('agent stopped')).toBe(true);
    expect((await machineView(admin, machineId)).draining).toBe(true);
  });
});

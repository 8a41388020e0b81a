// Jobs end to end over real HTTP (dev host, Azurite, cosmosdb-server), with the scheduler run on demand through the
// host's admin endpoint: affinity placement under `adr010`, pools, claim fencing with real read SAS, events (polling and
// SSE), cancel and retry, quotas, idempotent intake, LoRA validation and tenant isolation.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { issueDevToken } from '../../functions/core/auth.js';
import type { ApiClient } from '../../api-client/index.js';
import type { ClaimResponse, JobEvent, JobView } from '../../contract/jobs.js';
import type { MachineDetail } from '../../contract/machines.js';
import type { JobDoc } from '../../functions/core/jobs/model.js';
import { newJobId, newLoraId } from '../../contract/ids.js';
import { SHARED_OWNER } from '../../functions/core/loras/records.js';
import { startTestHost, type TestHost } from '../support/stack.js';
import { errorOf, failure, getJob, runTimer, seedLora, sleep, suffix, TestMachine } from './jobs.fixtures.js';

let t: TestHost;
let admin: ApiClient;
const machines: TestMachine[] = [];

beforeAll(async () => {
  t = await startTestHost({ SCHEDULER_POLICY: 'adr010', TENANT_MAX_ACTIVE_JOBS: '10', PLACEMENT_ON_EVENTS: 'false' }, { timers: false });
  admin = await t.as('ops', 'admin');
  // Intake refuses a pool no machine was ever registered in (unknown_pool): these pools exist, with no live machine.
  for (const pool of ['heavy', 'nopool']) await admin.post('machines', { machine_id: `gpu-${pool}-placeholder`, pool, slots: 1 });
});
afterAll(async () => {
  for (const m of machines) await m.close();
  await t?.stop();
});

async function machine(id: string, pool = 'standard', slots = 1): Promise<TestMachine> {
  const m = await TestMachine.register(t, admin, `${id}-${suffix()}`, pool, slots);
  machines.push(m);
  return m;
}

const jobBody = (loras: { type: 'user'; flat_file_id: string }[] | { type: 'shared'; filename: string }[] = [], pool?: string) => ({
  service_required: 'comfyui',
  ...(pool ? { pool } : {}),
  payload: { prompt: 'a cat' },
  requirements: { loras },
});

async function submit(api: ApiClient, body: unknown, headers?: Record<string, string>): Promise<string> {
  const res = await api.post<{ job_id: string; status: string }>('jobs', body, headers);
  expect(res.status).toBe('pending');
  return res.job_id;
}

/** Parses a server-sent event stream as it arrives; `until` ends the read. */
async function readSse(res: Response, until: (ev: { event: string; data: unknown; at: number }) => boolean, timeoutMs = 10_000) {
  const seen: { event: string; data: unknown; at: number }[] = [];
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  let buf = '';
  const deadline = Date.now() + timeoutMs;
  try {
    while (Date.now() < deadline) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += decoder.decode(value, { stream: true });
      let i: number;
      while ((i = buf.indexOf('\n\n')) >= 0) {
        const frame = buf.slice(0, i);
        buf = buf.slice(i + 2);
        const event = /^event: (.*)$/m.exec(frame)?.[1];
        const data = /^data: (.*)$/m.exec(frame)?.[1];
        if (!event) continue;
        const ev = { event, data: data ? JSON.parse(data) : null, at: Date.now() };
        seen.push(ev);
        if (until(ev)) return seen;
      }
    }
  } finally {
    await reader.cancel().catch(() => {});
  }
  return seen;
}

describe('placement under adr010', () => {
  it('sends a job to the machine that holds its LoRA (score 10, breakdown recorded); an uncached job still gets a machine', async () => {
    const alice = await t.as('alice-place');
    const cached = await seedLora(t, { owner: 'alice-place' });
    const cold = await seedLora(t, { owner: 'alice-place' });
    const a = await machine('gpu-a', 'standard', 2);
    const b = await machine('gpu-b', 'standard', 2);
    await a.beat({ user: [cached.id] });
    await b.beat();

    const hot = await submit(alice, jobBody([{ type: 'user', flat_file_id: cached.id }]));
    await runTimer(t, 'schedulerTick');
    const view = await getJob(alice, hot);
    expect(view).toMatchObject({ status: 'assigned', machine_id: a.id, affinity_score: 10, policy: 'adr010', epoch: 1, attempt: 1 });
    expect(view.score_breakdown).toMatchObject({ affinity: 10 });
    expect(view.cache).toEqual({ hit_loras: [cached.id], missing_loras: [] });
    expect(await a.drain()).toEqual([{ job_id: hot, epoch: 1 }]);

    const uncached = await submit(alice, jobBody([{ type: 'user', flat_file_id: cold.id }]));
    await Promise.all([a.beat({ user: [cached.id] }), b.beat()]);
    await runTimer(t, 'schedulerTick');
    const coldView = await getJob(alice, uncached);
    expect(coldView.status).toBe('assigned');
    expect([a.id, b.id]).toContain(coldView.machine_id);
    expect(coldView.affinity_score).toBe(0);
    expect(coldView.cache.missing_loras).toEqual([cold.id]);
    await a.drain(100);
    await b.drain(100);
    // Free the slots for the other tests.
    await alice.delete(`jobs/${hot}`);
    await alice.delete(`jobs/${uncached}`);
  });

  it('respects pools: a heavy job never goes to a standard machine and waits while no heavy machine is live', async () => {
    const bob = await t.as('bob-pools');
    const std = await machine('gpu-std', 'standard', 4);
    await std.beat();
    const heavyJob = await submit(bob, jobBody([], 'heavy'));
    await runTimer(t, 'schedulerTick');
    await runTimer(t, 'schedulerTick');
    expect((await getJob(bob, heavyJob)).status).toBe('pending');
    expect(await std.drain(200)).toEqual([]);

    // A registered heavy machine that never sent a heartbeat is not live: still pending.
    const heavy = await machine('gpu-heavy', 'heavy', 1);
    await std.beat();
    await runTimer(t, 'schedulerTick');
    expect((await getJob(bob, heavyJob)).status).toBe('pending');

    await heavy.beat();
    await runTimer(t, 'schedulerTick');
    expect(await getJob(bob, heavyJob)).toMatchObject({ status: 'assigned', machine_id: heavy.id });
    expect(await heavy.drain()).toEqual([{ job_id: heavyJob, epoch: 1 }]);
    await bob.delete(`jobs/${heavyJob}`);
  });
});

describe('capacity', () => {
  it('a one-slot machine gets its next job as soon as the previous one finished or was cancelled', async () => {
    const user = await t.as('olga-slots');
    const m = await machine('gpu-one', 'onepool', 1);
    await m.beat();
    const first = await submit(user, jobBody([], 'onepool'));
    const second = await submit(user, jobBody([], 'onepool'));
    await m.beat();
    await runTimer(t, 'schedulerTick');
    expect(await m.drain()).toEqual([{ job_id: first, epoch: 1 }]);
    expect((await getJob(user, second)).status).toBe('pending');
    expect((await m.claim(first, 1)).status).toBe(200);
    expect((await m.event(first, { type: 'succeeded', epoch: 1 })).status).toBe(200);
    await m.beat();
    await runTimer(t, 'schedulerTick');
    expect(await getJob(user, second)).toMatchObject({ status: 'assigned', machine_id: m.id });
    expect(await m.drain()).toEqual([{ job_id: second, epoch: 1 }]);
    // Cancelled before it was claimed: the slot is free again at once too.
    const third = await submit(user, jobBody([], 'onepool'));
    await user.delete(`jobs/${second}`);
    await m.beat();
    await runTimer(t, 'schedulerTick');
    expect(await getJob(user, third)).toMatchObject({ status: 'assigned', machine_id: m.id });
    await user.delete(`jobs/${third}`);
  });
});

describe('claim fencing', () => {
  let carol: ApiClient;
  let m: TestMachine;
  const content = Buffer.from('not really safetensors, but bytes the machine must get back exactly');
  let loraId: string;
  let sharedName: string;

  beforeAll(async () => {
    carol = await t.as('carol-claim');
    loraId = (await seedLora(t, { owner: 'carol-claim', content })).id;
    sharedName = (await seedLora(t, { owner: SHARED_OWNER, content: Buffer.from('shared bytes') })).key;
    m = await machine('gpu-claim', 'claimpool', 4);
    await m.beat();
  });

  it('a correct claim returns the spec and a read URL per LoRA that downloads the blob; a stale or repeated claim gets 409', async () => {
    const id = await submit(carol, jobBody([{ type: 'user', flat_file_id: loraId }, { type: 'shared', filename: sharedName }] as never, 'claimpool'));
    await m.beat(); // stay live however slow the previous test was
    await runTimer(t, 'schedulerTick');
    const [msg] = await m.drain();
    expect(msg).toEqual({ job_id: id, epoch: 1 });

    const wrongEpoch = await m.claim(id, 2);
    expect(await errorOf(wrongEpoch)).toMatchObject({ status: 409, code: 'conflict' });

    const ok = await m.claim(id, 1);
    expect(ok.status).toBe(200);
    const spec = (await ok.json()) as ClaimResponse;
    expect(spec).toMatchObject({ job_id: id, epoch: 1, attempt: 1, service_required: 'comfyui', payload: { prompt: 'a cat' } });
    expect(spec.loras.map((l) => [l.kind, l.key])).toEqual([
      ['user', loraId],
      ['shared', sharedName],
    ]);
    const got = Buffer.from(await (await fetch(spec.loras[0]!.download_url)).arrayBuffer());
    expect(got.equals(content)).toBe(true);
    expect(Buffer.from(await (await fetch(spec.loras[1]!.download_url)).arrayBuffer()).toString()).toBe('shared bytes');
    // The URL is read-only.
    const write = await fetch(spec.loras[0]!.download_url, { method: 'PUT', headers: { 'x-ms-blob-type': 'BlockBlob' }, body: 'x' });
    expect(write.status).toBe(403);
    expect((await getJob(carol, id)).status).toBe('running');

    // A redelivered dispatch of the same epoch must not start a second run.
    expect(await errorOf(await m.claim(id, 1))).toMatchObject({ status: 409 });
    await carol.delete(`jobs/${id}`);
  });

  it('a claim on a cancelled job gets 409', async () => {
    const id = await submit(carol, jobBody([], 'claimpool'));
    await m.beat(); // stay live however slow the previous test was
    await runTimer(t, 'schedulerTick');
    expect(await m.drain()).toEqual([{ job_id: id, epoch: 1 }]);
    expect((await carol.delete<JobView>(`jobs/${id}`)).status).toBe('cancelled');
    const res = await m.claim(id, 1);
    expect(await errorOf(res)).toMatchObject({ status: 409 });
    expect((await getJob(carol, id)).status).toBe('cancelled');
  });

  it('another machine cannot claim with its own token, nor claim in the name of the assigned machine', async () => {
    const id = await submit(carol, jobBody([], 'claimpool'));
    await m.beat(); // stay live however slow the previous test was
    await runTimer(t, 'schedulerTick');
    await m.drain();
    const other = await machine('gpu-other', 'otherpool', 1);
    const asOther = await other.api.raw('POST', `jobs/${id}/claim`, { body: { machine_id: m.id, epoch: 1 } });
    expect(asOther.status).toBe(403);
    expect(await errorOf(await other.claim(id, 1))).toMatchObject({ status: 409 });
    expect((await getJob(carol, id)).status).toBe('assigned');
    await carol.delete(`jobs/${id}`);
  });
});

describe('events, cancel and retry', () => {
  let dave: ApiClient;
  let m: TestMachine;
  beforeAll(async () => {
    dave = await t.as('dave-events');
    m = await machine('gpu-ev', 'evpool', 4);
    await m.beat();
  });

  async function runningJob(): Promise<string> {
    const id = await submit(dave, jobBody([], 'evpool'));
    await m.beat();
    await runTimer(t, 'schedulerTick');
    expect(await m.drain()).toContainEqual({ job_id: id, epoch: 1 });
    expect((await m.claim(id, 1)).status).toBe(200);
    return id;
  }

  it('progress, logs and success reach the user by ?after= polling and by SSE within 5 s', async () => {
    const id = await runningJob();
    const stream = await dave.raw('GET', `jobs/${id}/events`, { headers: { accept: 'text/event-stream' } });
    expect(stream.status).toBe(200);
    expect(stream.headers.get('content-type')).toMatch(/text\/event-stream/);

    const sentAt: Record<string, number> = {};
    const reading = readSse(stream, (ev) => ev.event === 'end', 20_000);
    await sleep(300);
    sentAt.progress = Date.now();
    expect((await m.event(id, { type: 'progress', epoch: 1, progress: 0.5, message: 'half way' })).status).toBe(200);
    sentAt.log = Date.now();
    expect((await m.event(id, { type: 'log', epoch: 1, stream: 'stdout', lines: ['step 1', 'step 2'] })).status).toBe(200);

    const page = await dave.get<{ events: JobEvent[]; next_after: number; status: string }>(`jobs/${id}/events?after=0`);
    expect(page.events.map((e) => e.type)).toEqual(['progress', 'log']);
    expect(page.events[1]!.data).toMatchObject({ lines: ['step 1', 'step 2'] });
    expect(page.status).toBe('running');

    sentAt.succeeded = Date.now();
    const done = await m.event(id, { type: 'succeeded', epoch: 1, result: { images: 1 } });
    expect(await done.json()).toEqual({ accepted: true, cancel_requested: false });
    // A duplicate terminal report is a no-op.
    expect((await m.event(id, { type: 'succeeded', epoch: 1, result: { images: 1 } })).status).toBe(200);

    const after = await dave.get<{ events: JobEvent[]; next_after: number }>(`jobs/${id}/events?after=${page.next_after}`);
    expect(after.events.map((e) => e.type)).toEqual(['succeeded']);

    const seen = await reading;
    const byType = new Map(seen.map((e) => [e.event, e]));
    for (const type of ['progress', 'log', 'succeeded'] as const) {
      const ev = byType.get(type);
      expect(ev, `SSE ${type}`).toBeDefined();
      const latency = ev!.at - sentAt[type]!;
      console.log(`[events] SSE ${type} latency ${latency} ms`);
      expect(latency).toBeLessThan(5_000);
    }
    expect(byType.get('end')?.data).toMatchObject({ status: 'succeeded', result: { images: 1 } });
    expect((await getJob(dave, id)).status).toBe('succeeded');
  });

  it('the claim records claimed_at (started_at stays null); the first `started` report records started_at', async () => {
    const id = await runningJob();
    const claimed = await getJob(dave, id);
    expect(claimed).toMatchObject({ status: 'running', started_at: null });
    expect(Date.parse(claimed.claimed_at ?? '')).toBeGreaterThanOrEqual(Date.parse(claimed.assigned_at!));

    const cache = { hit_loras: [], missing_loras: [], download_ms: 0, bytes_downloaded: 0 };
    expect((await m.event(id, { type: 'started', epoch: 1, cache })).status).toBe(200);
    const started = await getJob(dave, id);
    expect(started.claimed_at).toBe(claimed.claimed_at);
    expect(started.started_at).not.toBeNull();
    expect(Date.parse(started.started_at!)).toBeGreaterThanOrEqual(Date.parse(claimed.claimed_at!));
    // A resent `started` (its answer lost) keeps the first start.
    await sleep(20);
    expect((await m.event(id, { type: 'started', epoch: 1, cache })).status).toBe(200);
    expect((await getJob(dave, id)).started_at).toBe(started.started_at);

    expect((await m.event(id, { type: 'succeeded', epoch: 1 })).status).toBe(200);
    const done = await getJob(dave, id);
    expect(done).toMatchObject({ status: 'succeeded', claimed_at: claimed.claimed_at, started_at: started.started_at });
    expect(Date.parse(done.finished_at!)).toBeGreaterThanOrEqual(Date.parse(started.started_at!));
  });

  it('a record claimed before claimed_at existed (claim time in started_at) still reads, and its `started` report fixes it', async () => {
    const id = await runningJob();
    const jobs = t.clients.cosmosContainers.jobs;
    const { resource: doc } = await jobs.item(id, 'dave-events').read<JobDoc>();
    const claimTime = doc!.claimed_at!;
    const { claimed_at: _gone, ...old } = { ...doc!, started_at: claimTime };
    await jobs.item(id, 'dave-events').replace(old);
    expect((await jobs.item(id, 'dave-events').read<JobDoc>()).resource).not.toHaveProperty('claimed_at');

    expect(await getJob(dave, id)).toMatchObject({ status: 'running', claimed_at: claimTime, started_at: claimTime });
    const detail = await admin.get<MachineDetail>(`machines/${m.id}`);
    expect(detail.jobs.find((j) => j.job_id === id)).toMatchObject({ claimed_at: claimTime, started_at: claimTime });

    await sleep(20);
    const cache = { hit_loras: [], missing_loras: [], download_ms: 0, bytes_downloaded: 0 };
    expect((await m.event(id, { type: 'started', epoch: 1, cache })).status).toBe(200);
    const started = await getJob(dave, id);
    expect(started.claimed_at).toBe(claimTime);
    expect(Date.parse(started.started_at!)).toBeGreaterThan(Date.parse(claimTime));
    expect((await m.event(id, { type: 'succeeded', epoch: 1 })).status).toBe(200);
  });

  it('cancelling a running job tells the machine to stop (heartbeat stop_jobs and cancel_requested on its next event)', async () => {
    const id = await runningJob();
    const before = await m.beat({ running: [{ job_id: id, epoch: 1 }] });
    expect(before.stop_jobs).toEqual([]);
    const cancelled = await dave.delete<JobView>(`jobs/${id}`);
    expect(cancelled.status).toBe('cancelled');
    const hb = await m.beat({ running: [{ job_id: id, epoch: 1 }] });
    expect(hb.stop_jobs).toEqual([{ job_id: id, epoch: 1 }]);
    const ev = await m.event(id, { type: 'progress', epoch: 1, progress: 0.9 });
    expect(await ev.json()).toMatchObject({ cancel_requested: true });
    const late = await m.event(id, { type: 'succeeded', epoch: 1 });
    expect(await late.json()).toMatchObject({ accepted: false, cancel_requested: true });
    expect((await getJob(dave, id)).status).toBe('cancelled');
    // Cancelling again is a no-op.
    expect((await dave.delete<JobView>(`jobs/${id}`)).status).toBe('cancelled');
  });

  it('a failed job can be retried: pending again with a new epoch and attempt, then runs again', async () => {
    const id = await runningJob();
    const failed = await m.event(id, { type: 'failed', epoch: 1, reason: 'bad payload', retryable: false });
    expect(failed.status).toBe(200);
    expect(await getJob(dave, id)).toMatchObject({ status: 'failed', error: 'bad payload' });
    // Only failed or cancelled jobs can be retried.
    const running = await runningJob();
    expect(await failure(dave.post(`jobs/${running}/retry`))).toMatchObject({ status: 409 });
    await m.event(running, { type: 'succeeded', epoch: 1 });

    expect((await getJob(dave, id)).claimed_at).not.toBeNull();
    const retried = await dave.post<JobView>(`jobs/${id}/retry`);
    expect(retried).toMatchObject({ status: 'pending', epoch: 2, attempt: 2, error: null, machine_id: null, claimed_at: null, started_at: null });
    await m.beat();
    await runTimer(t, 'schedulerTick');
    expect(await m.drain()).toEqual([{ job_id: id, epoch: 3 }]);
    // The old attempt's epoch is fenced off.
    expect(await errorOf(await m.claim(id, 1))).toMatchObject({ status: 409 });
    expect((await m.claim(id, 3)).status).toBe(200);
    expect((await m.event(id, { type: 'succeeded', epoch: 3 })).status).toBe(200);
    expect(await getJob(dave, id)).toMatchObject({ status: 'succeeded', attempt: 2 });
  });
});

describe('intake', () => {
  it('refuses new work with 429 once pending+running reaches 90 % of TENANT_MAX_ACTIVE_JOBS (10 → 9)', async () => {
    const erin = await t.as('erin-quota');
    const ids: string[] = [];
    for (let i = 0; i < 9; i++) ids.push(await submit(erin, jobBody([], 'nopool')));
    const refused = await failure(erin.post('jobs', jobBody([], 'nopool')));
    expect(refused).toMatchObject({ status: 429, code: 'quota_exceeded' });
    expect(refused.message).toMatch(/9 active jobs/);
    // Another tenant is not affected.
    const frank = await t.as('frank-quota');
    await submit(frank, jobBody([], 'nopool'));
    // Finished work frees quota.
    await erin.delete(`jobs/${ids[0]}`);
    await submit(erin, jobBody([], 'nopool'));
    expect(await failure(erin.post('jobs', jobBody([], 'nopool')))).toMatchObject({ status: 429 });
    for (const id of ids) await erin.delete(`jobs/${id}`);
  });

  it('the same Idempotency-Key returns the same job; the same key with another body is a 409', async () => {
    const gina = await t.as('gina-idem');
    const key = `order-${suffix()}`;
    const body = jobBody([], 'nopool');
    const first = await gina.raw('POST', 'jobs', { body, headers: { 'idempotency-key': key } });
    expect(first.status).toBe(201);
    const { job_id } = (await first.json()) as { job_id: string };
    const again = await gina.raw('POST', 'jobs', { body: { ...body, payload: { prompt: 'a cat' } }, headers: { 'idempotency-key': key } });
    expect(again.status).toBe(200);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(((await again.json()) as JobView).job_id).toBe(job_id);
    // Concurrent retries of one request make one job.
    const key2 = `order-${suffix()}`;
    const racing = await Promise.all([1, 2, 3, 4].map(() => gina.raw('POST', 'jobs', { body, headers: { 'idempotency-key': key2 } })));
    const ids = await Promise.all(racing.map(async (r) => ((await r.json()) as { job_id: string }).job_id));
    expect(racing.map((r) => r.status).sort()).toEqual([200, 200, 200, 201]);
    expect(new Set(ids).size).toBe(1);

    const changed = await gina.raw('POST', 'jobs', { body: jobBody([], 'otherpool'), headers: { 'idempotency-key': key } });
    expect(await errorOf(changed)).toMatchObject({ status: 409, code: 'conflict' });
    // The key is per tenant: another tenant's same key is its own job.
    const hank = await t.as('hank-idem');
    const other = await hank.raw('POST', 'jobs', { body, headers: { 'idempotency-key': key } });
    expect(other.status).toBe(201);
    expect(((await other.json()) as { job_id: string }).job_id).not.toBe(job_id);
    const list = await gina.get<{ jobs: JobView[] }>('jobs?status=pending');
    expect(list.jobs.filter((j) => j.job_id === job_id)).toHaveLength(1);
    await gina.delete(`jobs/${job_id}`);
    await gina.delete(`jobs/${ids[0]}`);
    await hank.delete(`jobs/${((await hank.get<{ jobs: JobView[] }>('jobs')).jobs[0]!).job_id}`);
  });

  it('422 names the LoRA that is missing, not ready, rejected or another tenant\'s', async () => {
    const ivy = await t.as('ivy-422');
    const missing = newLoraId();
    let e = await failure(ivy.post('jobs', jobBody([{ type: 'user', flat_file_id: missing }])));
    expect(e).toMatchObject({ status: 422, code: 'invalid_lora' });
    expect(e.message).toContain(missing);

    const uploading = await seedLora(t, { owner: 'ivy-422', status: 'uploading' });
    e = await failure(ivy.post('jobs', jobBody([{ type: 'user', flat_file_id: uploading.id }])));
    expect(e).toMatchObject({ status: 422, code: 'lora_not_ready' });
    expect(e.message).toContain(uploading.id);

    const rejected = await seedLora(t, { owner: 'ivy-422', status: 'rejected' });
    e = await failure(ivy.post('jobs', jobBody([{ type: 'user', flat_file_id: rejected.id }])));
    expect(e).toMatchObject({ status: 422, code: 'invalid_lora' });
    expect(e.message).toContain(rejected.id);

    const foreign = await seedLora(t, { owner: 'someone-else' });
    e = await failure(ivy.post('jobs', jobBody([{ type: 'user', flat_file_id: foreign.id }])));
    expect(e).toMatchObject({ status: 422, code: 'invalid_lora' });
    expect(e.message).toContain(foreign.id);

    e = await failure(ivy.post('jobs', jobBody([{ type: 'shared', filename: 'no-such-style.safetensors' }])));
    expect(e).toMatchObject({ status: 422, code: 'invalid_lora' });
    expect(e.message).toContain('no-such-style.safetensors');

    // Nothing was created.
    expect((await ivy.get<{ jobs: JobView[] }>('jobs')).jobs).toEqual([]);
    // Bad input is a 400, never a 500.
    expect(await failure(ivy.post('jobs', { service_required: 'x', requirements: { loras: [{ type: 'user', flat_file_id: 'nope' }] } }))).toMatchObject({
      status: 400,
    });
  });

  it("another tenant's job is a 404 on GET, DELETE, retry and events", async () => {
    const jack = await t.as('jack-owner');
    const kim = await t.as('kim-intruder');
    const id = await submit(jack, jobBody([], 'nopool'));
    expect(await failure(kim.get(`jobs/${id}`))).toMatchObject({ status: 404, code: 'not_found' });
    expect(await failure(kim.delete(`jobs/${id}`))).toMatchObject({ status: 404 });
    expect(await failure(kim.post(`jobs/${id}/retry`))).toMatchObject({ status: 404 });
    expect(await failure(kim.get(`jobs/${id}/events`))).toMatchObject({ status: 404 });
    const sse = await kim.raw('GET', `jobs/${id}/events`, { headers: { accept: 'text/event-stream' } });
    expect(sse.status).toBe(404);
    await sse.body?.cancel();
    expect((await kim.get<{ jobs: JobView[] }>('jobs')).jobs).toEqual([]);
    expect(await failure(kim.get(`jobs/${newJobId()}`))).toMatchObject({ status: 404 });
    expect((await getJob(jack, id)).status).toBe('pending');
    await jack.delete(`jobs/${id}`);
  });
});

describe('CLI', () => {
  /** Runs the built CLI against the test host as `subject`. */
  async function cli(subject: string, args: string[], whileRunning?: () => Promise<void>): Promise<{ code: number | null; out: string }> {
    const token = await issueDevToken(t.settings.AUTH_DEV_SECRET!, subject, 'user');
    const child = spawn(process.execPath, [join(process.cwd(), 'dist/cli/index.js'), '--api', t.apiUrl, '--token', token, ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    if (whileRunning) await whileRunning();
    return { code: await exited, out };
  }

  it('submit, jobs and watch (live logs until the job ends)', async () => {
    const subject = 'cli-user';
    const m = await machine('gpu-cli', 'clipool', 1);
    await m.beat();
    const submitted = await cli(subject, ['submit', '--pool', 'clipool', '--service', 'comfyui', '--idempotency-key', `k-${suffix()}`]);
    expect(submitted.code).toBe(0);
    const id = /^(job_[0-9a-z]{26}) pending$/m.exec(submitted.out)?.[1];
    expect(id, submitted.out).toBeDefined();
    const listed = await cli(subject, ['jobs', '--status', 'pending']);
    expect(listed.out).toContain(id!);

    await m.beat();
    await runTimer(t, 'schedulerTick');
    expect(await m.drain()).toEqual([{ job_id: id, epoch: 1 }]);
    expect((await m.claim(id!, 1)).status).toBe(200);
    const watched = await cli(subject, ['watch', id!], async () => {
      await sleep(1_500);
      await m.event(id!, { type: 'log', epoch: 1, stream: 'stdout', lines: ['rendering frame 1'] });
      await sleep(300);
      await m.event(id!, { type: 'succeeded', epoch: 1, result: { ok: true } });
    });
    expect(watched.code, watched.out).toBe(0);
    expect(watched.out).toContain('rendering frame 1');
    expect(watched.out).toMatch(/succeeded/);
  });
});

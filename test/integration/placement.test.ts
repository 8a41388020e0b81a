// Placement on events over real HTTP (dev host, Azurite, cosmosdb-server) with the timers OFF: nothing but intake and
// heartbeats can place a job here, so every assignment below was made by an event, not by a scheduler tick.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ApiClient } from '../../api-client/index.js';
import { startTestHost, type TestHost } from '../support/stack.js';
import { getJob, suffix, TestMachine } from './jobs.fixtures.js';

let t: TestHost;
let admin: ApiClient;
const machines: TestMachine[] = [];

beforeAll(async () => {
  t = await startTestHost({ SCHEDULER_POLICY: 'affinity' }, { timers: false });
  admin = await t.as('ops', 'admin');
});
afterAll(async () => {
  for (const m of machines) await m.close();
  await t?.stop();
});

async function machine(pool: string, slots = 1): Promise<TestMachine> {
  const m = await TestMachine.register(t, admin, `gpu-ev-${suffix()}`, pool, slots);
  machines.push(m);
  return m;
}

const jobBody = (pool: string) => ({ service_required: 'comfyui', pool, payload: { prompt: 'a cat' }, requirements: { loras: [] } });

describe('placement on events (no timer runs)', () => {
  it('intake places a job on an idle fleet at once and dispatches it', async () => {
    const user = await t.as(`una-${suffix()}`);
    const pool = `evpool${suffix()}`;
    const m = await machine(pool);
    await m.beat();
    const res = await user.post<{ job_id: string; status: string }>('jobs', jobBody(pool));
    expect(res.status).toBe('assigned');
    expect(await getJob(user, res.job_id)).toMatchObject({ status: 'assigned', machine_id: m.id, epoch: 1 });
    expect(await m.drain()).toEqual([{ job_id: res.job_id, epoch: 1 }]);
  });

  it('a heartbeat that frees a slot places the next pending job on it', async () => {
    const user = await t.as(`vera-${suffix()}`);
    const pool = `evpool${suffix()}`;
    const m = await machine(pool, 1);
    await m.beat();
    const first = await user.post<{ job_id: string; status: string }>('jobs', jobBody(pool));
    expect(first.status).toBe('assigned');
    const second = await user.post<{ job_id: string; status: string }>('jobs', jobBody(pool));
    expect(second.status).toBe('pending'); // the only slot is taken
    expect(await m.drain()).toEqual([{ job_id: first.job_id, epoch: 1 }]);
    expect((await m.claim(first.job_id, 1)).status).toBe(200);
    await m.beat({ running: [{ job_id: first.job_id, epoch: 1 }] });
    expect((await getJob(user, second.job_id)).status).toBe('pending'); // a beat that frees nothing places nothing here
    // Cancelled by its owner: the agent stops it and reports nothing, so only its next beat says the slot is free.
    await user.delete(`jobs/${first.job_id}`);
    expect((await getJob(user, second.job_id)).status).toBe('pending');
    await m.beat({ running: [] }); // the agent beats right after a run: one running job fewer
    expect(await getJob(user, second.job_id)).toMatchObject({ status: 'assigned', machine_id: m.id });
    expect(await m.drain()).toEqual([{ job_id: second.job_id, epoch: 1 }]);
  });

  it("a run's outcome places the next pending job on its slot before the machine beats again", async () => {
    const user = await t.as(`vito-${suffix()}`);
    const pool = `evpool${suffix()}`;
    const m = await machine(pool, 1);
    await m.beat();
    const first = await user.post<{ job_id: string; status: string }>('jobs', jobBody(pool));
    const second = await user.post<{ job_id: string; status: string }>('jobs', jobBody(pool));
    const third = await user.post<{ job_id: string; status: string }>('jobs', jobBody(pool));
    expect([first.status, second.status, third.status]).toEqual(['assigned', 'pending', 'pending']);
    expect(await m.drain()).toEqual([{ job_id: first.job_id, epoch: 1 }]);
    expect((await m.claim(first.job_id, 1)).status).toBe(200);
    await m.beat({ running: [{ job_id: first.job_id, epoch: 1 }] }); // the machine's last word: first is running
    // A `started` or a `log` report ends nothing: the slot stays taken.
    expect((await m.event(first.job_id, { type: 'started', epoch: 1, cache: { hit_loras: [], missing_loras: [], download_ms: 0, bytes_downloaded: 0 } })).status).toBe(200);
    expect((await getJob(user, second.job_id)).status).toBe('pending');
    expect((await m.event(first.job_id, { type: 'succeeded', epoch: 1 })).status).toBe(200);
    // No heartbeat since (it still lists first as running) and no timer: the outcome itself placed the oldest job,
    // and only one (one slot).
    expect(await getJob(user, second.job_id)).toMatchObject({ status: 'assigned', machine_id: m.id, epoch: 1 });
    expect((await getJob(user, third.job_id)).status).toBe('pending');
    expect(await m.drain()).toEqual([{ job_id: second.job_id, epoch: 1 }]);
    // A failure is not a freed slot (the machine may be in trouble; its next beat says): nothing is placed, not even
    // the retry of the failed job itself.
    expect((await m.claim(second.job_id, 1)).status).toBe(200);
    expect((await m.event(second.job_id, { type: 'failed', epoch: 1, reason: 'ComfyUI went away mid-run', retryable: true })).status).toBe(200);
    expect((await getJob(user, third.job_id)).status).toBe('pending');
    expect((await getJob(user, second.job_id)).status).toBe('pending');
    expect(await m.drain(200)).toEqual([]);
  });

  it('intake never plans from a cached view older than a heartbeat that took the machine out of service', async () => {
    const user = await t.as(`xia-${suffix()}`);
    const pool = `evpool${suffix()}`;
    const m = await machine(pool, 4);
    await m.beat();
    const first = await user.post<{ job_id: string; status: string }>('jobs', jobBody(pool)); // caches the fleet view
    expect(first.status).toBe('assigned');
    await m.beat({ receiving: false });
    const second = await user.post<{ job_id: string; status: string }>('jobs', jobBody(pool));
    expect(second.status).toBe('pending'); // planned from the cached view it would go to m (3 free slots)
    await m.beat({ receiving: true, draining: true });
    expect((await user.post<{ job_id: string; status: string }>('jobs', jobBody(pool))).status).toBe('pending');
  });

  it('a job for a pool with no live machine stays pending (for the timer), and intake still answers 201', async () => {
    const user = await t.as(`wes-${suffix()}`);
    // A pool nobody ever registered in is refused (422 unknown_pool); one whose only machine never beats is not.
    const pool = `nopool${suffix()}`;
    await admin.post('machines', { machine_id: `gpu-${pool}`, pool, slots: 1 });
    const res = await user.raw('POST', 'jobs', { body: jobBody(pool) });
    expect(res.status).toBe(201);
    const { job_id, status } = (await res.json()) as { job_id: string; status: string };
    expect(status).toBe('pending');
    // Intake's second look noted why it waits (job --explain).
    expect((await getJob(user, job_id)).waits.map((w) => w.reason)).toEqual(['no_machine_in_pool']);
  });

  it("a machine's first heartbeat places the jobs already waiting for its pool", async () => {
    const user = await t.as(`yan-${suffix()}`);
    const pool = `evpool${suffix()}`;
    const m = await machine(pool, 2); // registered, never beat: not live
    const waiting = await user.post<{ job_id: string; status: string }>('jobs', jobBody(pool));
    expect(waiting.status).toBe('pending');
    await m.beat(); // comes into service: no tick runs here, so only this beat can place the job
    expect(await getJob(user, waiting.job_id)).toMatchObject({ status: 'assigned', machine_id: m.id, epoch: 1 });
    expect(await m.drain()).toEqual([{ job_id: waiting.job_id, epoch: 1 }]);
  });

  it('an admin drain is seen by the next intake at once, and an undrain places what waited', async () => {
    const user = await t.as(`zoe-${suffix()}`);
    const pool = `evpool${suffix()}`;
    const m = await machine(pool, 4);
    await m.beat();
    const first = await user.post<{ job_id: string; status: string }>('jobs', jobBody(pool)); // caches the fleet view
    expect(first.status).toBe('assigned');
    await admin.post(`machines/${m.id}/drain`);
    const second = await user.post<{ job_id: string; status: string }>('jobs', jobBody(pool));
    expect(second.status).toBe('pending'); // planned from the cached view it would go to m (3 free slots)
    await admin.post(`machines/${m.id}/undrain`); // no tick runs here: only the undrain can place it
    expect(await getJob(user, second.job_id)).toMatchObject({ status: 'assigned', machine_id: m.id });
  });
});

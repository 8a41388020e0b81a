// Machines over real HTTP with the host's own timers running (scheduler and reaper every second): registration and
// machine tokens, heartbeats and liveness, the pools view, and re-routing off a machine that went silent or never
// claimed what it was sent.
import { SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ApiClient } from '../../api-client/index.js';
import { issueMachineToken } from '../../functions/core/auth.js';
import type { JobView } from '../../contract/jobs.js';
import type { MachineView } from '../../contract/machines.js';
import { until } from '../support/helpers.js';
import { startTestHost, type TestHost } from '../support/stack.js';
import { errorOf, failure, getJob, heartbeat, sleep, suffix, TestMachine, zeroCounters } from './jobs.fixtures.js';

const TICK_SECONDS = 1;
let t: TestHost;
let admin: ApiClient;
const machines: TestMachine[] = [];

beforeAll(async () => {
  t = await startTestHost(
    {
      SCHEDULER_SCHEDULE: `*/${TICK_SECONDS} * * * * *`,
      REAPER_SCHEDULE: `*/${TICK_SECONDS} * * * * *`,
      MACHINE_LIVENESS_SECONDS: '10',
      CLAIM_TIMEOUT_SECONDS: '3',
      // These tests pin the timer's and reaper's behaviour; placement on events has its own (placement.test.ts).
      PLACEMENT_ON_EVENTS: 'false',
    },
    { timers: true },
  );
  admin = await t.as('ops', 'admin');
});
afterAll(async () => {
  for (const m of machines) await m.close();
  await t?.stop();
});

async function machine(id: string, pool: string, slots = 1): Promise<TestMachine> {
  const m = await TestMachine.register(t, admin, `${id}-${suffix()}`, pool, slots);
  machines.push(m);
  return m;
}

/** An agent's heartbeat loop (every second here; 5 s in production) that can be silenced. */
class Beater {
  running: { job_id: string; epoch: number }[] = [];
  lastBeatAt = 0;
  private timer?: NodeJS.Timeout;
  constructor(readonly m: TestMachine) {}
  async start(): Promise<this> {
    await this.beatOnce();
    this.timer = setInterval(() => void this.beatOnce().catch(() => {}), 1_000);
    return this;
  }
  async beatOnce(): Promise<void> {
    await this.m.beat({ running: this.running });
    this.lastBeatAt = Date.now();
  }
  stop(): void {
    clearInterval(this.timer);
  }
}

const waitFor = <T>(what: string, fn: () => Promise<T | undefined | null | false>, timeoutMs = 30_000, everyMs = 100): Promise<T> =>
  until(what, fn, timeoutMs, everyMs);

describe('registration and machine tokens', () => {
  it('only admins register machines; the token authenticates that machine only; re-registering revokes it', async () => {
    const user = await t.as('mallory');
    expect(await failure(user.post('machines', { machine_id: `gpu-x-${suffix()}`, pool: 'standard', slots: 1 }))).toMatchObject({
      status: 403,
      code: 'forbidden',
    });
    expect(await failure(t.anonymous.post('machines', { machine_id: `gpu-x-${suffix()}` }))).toMatchObject({ status: 401 });
    expect(await failure(user.get('machines'))).toMatchObject({ status: 403 });
    expect(await failure(user.get('pools'))).toMatchObject({ status: 403 });

    const id = `gpu-reg-${suffix()}`;
    const first = await admin.raw('POST', 'machines', { body: { machine_id: id, pool: 'regpool', slots: 2 } });
    expect(first.status).toBe(201);
    const reg = (await first.json()) as { machine_id: string; pool: string; token: string; token_version: number };
    expect(reg).toMatchObject({ machine_id: id, pool: 'regpool', token_version: 1 });
    const m = new TestMachine(t, id, 'regpool', 2, reg.token);
    machines.push(m);
    expect((await m.beat()).ok).toBe(true);

    // Another machine's token cannot beat for it; neither can a user token or garbage.
    const other = await machine('gpu-other', 'regpool');
    const forged = await other.api.raw('POST', `machines/${id}/heartbeat`, { body: heartbeat('regpool', 1) });
    expect(await errorOf(forged)).toMatchObject({ status: 403, code: 'forbidden' });
    expect((await user.raw('POST', `machines/${id}/heartbeat`, { body: heartbeat('regpool', 1) })).status).toBe(403);
    expect((await t.anonymous.withToken('not-a-jwt').raw('POST', `machines/${id}/heartbeat`, { body: heartbeat('regpool', 1) })).status).toBe(401);
    // A heartbeat naming another pool than the registration is refused.
    expect(await errorOf(await m.api.raw('POST', `machines/${id}/heartbeat`, { body: heartbeat('heavy', 1) }))).toMatchObject({ status: 409 });

    const again = await admin.raw('POST', 'machines', { body: { machine_id: id, pool: 'regpool', slots: 2 } });
    expect(again.status).toBe(200);
    const reg2 = (await again.json()) as { token: string; token_version: number };
    expect(reg2.token_version).toBe(2);
    expect(await errorOf(await m.api.raw('POST', `machines/${id}/heartbeat`, { body: heartbeat('regpool', 2) }))).toMatchObject({
      status: 401,
      code: 'unauthorized',
    });
    expect((await t.anonymous.withToken(reg2.token).post(`machines/${id}/heartbeat`, heartbeat('regpool', 2))) as { ok: boolean }).toMatchObject({ ok: true });

    const list = await admin.get<{ machines: MachineView[] }>('machines');
    const view = list.machines.find((x) => x.machine_id === id)!;
    expect(view).toMatchObject({ pool: 'regpool', slots: 2, live: true, draining: false });
    expect(Date.now() - Date.parse(view.last_heartbeat_at!)).toBeLessThan(10_000);
    // Registered but never heard from: not live.
    const quiet = await machine('gpu-quiet', 'regpool');
    expect((await admin.get<{ machines: MachineView[] }>('machines')).machines.find((x) => x.machine_id === quiet.id)?.live).toBe(false);
  });

  it('GET /api/pools shows live capacity, busy slots, pending jobs and an estimated wait per pool', async () => {
    const pool = `pl${suffix()}`;
    const a = await new Beater(await machine('gpu-pa', pool, 2)).start();
    await machine('gpu-pb', pool, 4); // registered, never beats: not capacity
    const pools = async () => (await admin.get<{ pools: { pool: string; machines_live: number; slots_total: number; slots_busy: number; pending_jobs: number; estimated_wait_seconds: number | null }[] }>('pools')).pools;
    expect((await pools()).find((p) => p.pool === pool)).toEqual({
      pool,
      machines_live: 1,
      slots_total: 2,
      slots_busy: 0,
      pending_jobs: 0,
      estimated_wait_seconds: 0,
    });
    // A pool nobody serves: its jobs wait with no estimate.
    const user = await t.as(`pooluser-${suffix()}`);
    const orphanPool = `none${suffix()}`;
    // Intake refuses a pool nobody ever registered in (unknown_pool): a registered machine that never beats serves none.
    await admin.post('machines', { machine_id: `gpu-${orphanPool}`, pool: orphanPool, slots: 1 });
    const orphan = await user.post<{ job_id: string }>('jobs', { service_required: 'comfyui', pool: orphanPool });
    const op = await waitFor('the orphan pool to be listed', async () => (await pools()).find((p) => p.pool === orphanPool));
    expect(op).toMatchObject({ machines_live: 0, slots_total: 0, pending_jobs: 1, estimated_wait_seconds: null });
    await user.delete(`jobs/${orphan.job_id}`);

    // Fill the pool: 2 running on the machine, 3 more waiting → a wait of whole job-lengths.
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await user.post<{ job_id: string }>('jobs', { service_required: 'comfyui', pool })).job_id);
    const got = await waitFor('two dispatches', async () => {
      const msgs = await a.m.drain(200);
      return msgs.length > 0 ? msgs : null;
    });
    const more = got.length < 2 ? await a.m.drain(1500) : [];
    for (const msg of [...got, ...more]) {
      expect((await a.m.claim(msg.job_id, msg.epoch)).status).toBe(200);
      a.running.push(msg);
    }
    const busy = await waitFor('busy pool', async () => {
      const p = (await pools()).find((x) => x.pool === pool);
      return p && p.slots_busy === 2 ? p : null;
    });
    expect(busy).toMatchObject({ machines_live: 1, slots_total: 2, slots_busy: 2, pending_jobs: 3 });
    expect(busy.estimated_wait_seconds).toBeGreaterThan(0);
    a.stop();
    for (const id of ids) await user.delete(`jobs/${id}`);
  });
});

describe('re-routing', () => {
  it('a silent machine\'s running job is re-routed within 10 s + one tick; the old attempt is fenced off', async () => {
    const pool = `rr${suffix()}`;
    const user = await t.as(`rr-${suffix()}`);
    const a = await new Beater(await machine('gpu-rr-a', pool)).start();
    const b = await new Beater(await machine('gpu-rr-b', pool)).start();
    const byId = new Map([a, b].map((x) => [x.m.id, x]));
    const { job_id } = await user.post<{ job_id: string }>('jobs', { service_required: 'comfyui', pool });
    const first = await waitFor('assignment', async () => {
      const j = await getJob(user, job_id);
      return j.status === 'assigned' ? j : null;
    });
    const lost = byId.get(first.machine_id!)!;
    const survivor = lost === a ? b : a;
    const [msg] = await lost.m.drain(2000);
    expect(msg).toEqual({ job_id, epoch: first.epoch });
    expect((await lost.m.claim(job_id, first.epoch)).status).toBe(200);
    lost.running.push({ job_id, epoch: first.epoch });
    await lost.beatOnce();
    expect((await lost.m.event(job_id, { type: 'progress', epoch: first.epoch, progress: 0.1 })).status).toBe(200);

    // The machine goes silent (crash, network loss) after this beat.
    lost.stop();
    const silentSince = lost.lastBeatAt;
    const rerouted = await waitFor(
      're-route',
      async () => {
        const j = await getJob(user, job_id);
        return j.machine_id === survivor.m.id && j.status === 'assigned' ? { j, at: Date.now() } : null;
      },
      30_000,
      50,
    );
    const seconds = (rerouted.at - silentSince) / 1000;
    console.log(`[reroute] silent machine's job re-assigned ${seconds.toFixed(2)} s after its last heartbeat (liveness 10 s, tick/reaper every ${TICK_SECONDS} s)`);
    expect(seconds).toBeGreaterThanOrEqual(10);
    // 10 s of liveness + one reaper period + one tick period, plus a little for the two passes themselves.
    expect(seconds).toBeLessThan(10 + 2 * TICK_SECONDS + 2);
    expect(rerouted.j).toMatchObject({ epoch: first.epoch + 2, attempt: 2 });

    // The fleet view agrees: the silent machine is no longer live.
    const list = await admin.get<{ machines: MachineView[] }>('machines');
    expect(list.machines.find((x) => x.machine_id === lost.m.id)?.live).toBe(false);
    expect(list.machines.find((x) => x.machine_id === survivor.m.id)?.live).toBe(true);

    // The survivor runs the new attempt; the old machine, back from the dead, cannot report or claim any more.
    const [msg2] = await survivor.m.drain(2000);
    expect(msg2).toEqual({ job_id, epoch: rerouted.j.epoch });
    expect((await survivor.m.claim(job_id, rerouted.j.epoch)).status).toBe(200);
    expect(await errorOf(await lost.m.event(job_id, { type: 'succeeded', epoch: first.epoch }))).toMatchObject({ status: 409 });
    expect(await errorOf(await lost.m.claim(job_id, first.epoch))).toMatchObject({ status: 409 });
    const back = await lost.m.beat({ running: [{ job_id, epoch: first.epoch }] });
    expect(back.stop_jobs).toEqual([{ job_id, epoch: first.epoch }]);
    expect((await survivor.m.event(job_id, { type: 'succeeded', epoch: rerouted.j.epoch })).status).toBe(200);
    expect(await getJob(user, job_id)).toMatchObject({ status: 'succeeded', machine_id: survivor.m.id, attempt: 2 });
    a.stop();
    b.stop();
  });

  it('a job sent to a live machine that never claims it is re-routed after CLAIM_TIMEOUT_SECONDS', async () => {
    const pool = `uc${suffix()}`;
    const user = await t.as(`uc-${suffix()}`);
    const a = await new Beater(await machine('gpu-uc-a', pool)).start();
    const b = await new Beater(await machine('gpu-uc-b', pool)).start();
    const { job_id } = await user.post<{ job_id: string }>('jobs', { service_required: 'comfyui', pool });
    const first = await waitFor('assignment', async () => {
      const j = await getJob(user, job_id);
      return j.status === 'assigned' ? j : null;
    });
    const startedAt = Date.now();
    // Nobody claims (dispatch lost, agent stuck). Both machines keep beating.
    const second = await waitFor('re-route of the unclaimed job', async () => {
      const j = await getJob(user, job_id);
      return j.status === 'assigned' && j.epoch > first.epoch ? j : null;
    });
    const seconds = (Date.now() - startedAt) / 1000;
    console.log(`[reroute] unclaimed job re-assigned ${seconds.toFixed(2)} s after assignment (CLAIM_TIMEOUT_SECONDS 3)`);
    expect(second).toMatchObject({ epoch: first.epoch + 2, attempt: 1 });
    expect(second.machine_id).not.toBe(first.machine_id);
    expect(seconds).toBeLessThan(3 + 2 * TICK_SECONDS + 5);
    a.stop();
    b.stop();
    await user.delete<JobView>(`jobs/${job_id}`);
  });
});

describe('cache counters in the fleet metrics', () => {
  it("a machine's first heartbeat is its counters' baseline (what its cache did before counts nowhere); later moves count", async () => {
    const m = await machine('counters', 'standard');
    // A machine re-registered (or a control plane rebuilt) whose agent kept its cache database: lifetime counters.
    const lifetime = { ...zeroCounters(), misses: 40, downloads: 40, bytes_downloaded: 3_000_000_000 };
    await m.beat({ counters: lifetime });
    await m.beat({ counters: { ...lifetime, misses: 41, downloads: 41, bytes_downloaded: lifetime.bytes_downloaded + 1234 } });
    const { timeseries } = await admin.get<{ timeseries: { totals: { bytes_downloaded: number } } }>('metrics?since=15m&step=1m');
    expect(timeseries.totals.bytes_downloaded).toBe(1234);
  });
});

describe('machine token lifetime', () => {
  it('expires tokens and hands out a fresh one in the heartbeat once half the lifetime has passed', async () => {
    const id = `ttl-${suffix()}`;
    const reg = (await admin.post<{ token: string; token_version: number; token_expires_at: string }>('machines', { machine_id: id, pool: 'ttlpool', slots: 1 }));
    const ttlMs = Date.parse(reg.token_expires_at) - Date.now();
    // The default lifetime: one day, not forever.
    expect(ttlMs).toBeGreaterThan(23 * 3600_000);
    expect(ttlMs).toBeLessThanOrEqual(24 * 3600_000);
    // A fresh token: no rotation yet.
    const fresh = await t.anonymous.withToken(reg.token).post<{ machine_token?: unknown }>(`machines/${id}/heartbeat`, heartbeat('ttlpool', 1));
    expect(fresh.machine_token).toBeUndefined();

    const secret = t.settings.MACHINE_TOKEN_SECRET!;
    const day = 24 * 3600;
    // Issued 13 hours ago: past half its life, so the heartbeat rotates it.
    const old = await issueMachineToken(secret, id, reg.token_version, day, Date.now() - 13 * 3600_000);
    const rotated = await t.anonymous.withToken(old.token).post<{ machine_token?: { token: string; expires_at: string } }>(`machines/${id}/heartbeat`, heartbeat('ttlpool', 1));
    expect(rotated.machine_token).toBeDefined();
    expect(Date.parse(rotated.machine_token!.expires_at) - Date.now()).toBeGreaterThan(23 * 3600_000);
    expect(await t.anonymous.withToken(rotated.machine_token!.token).post(`machines/${id}/heartbeat`, heartbeat('ttlpool', 1))).toMatchObject({ ok: true });

    // Expired: refused.
    const expired = await issueMachineToken(secret, id, reg.token_version, day, Date.now() - day * 1000 - 60_000);
    expect(await errorOf(await t.anonymous.withToken(expired.token).raw('POST', `machines/${id}/heartbeat`, { body: heartbeat('ttlpool', 1) }))).toMatchObject({ status: 401 });
    // Never-expiring tokens (as issued before lifetimes existed): refused.
    const forever = await new SignJWT({ role: 'machine', ver: reg.token_version })
      .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
      .setSubject(id)
      .setIssuer('lora-router-machines')
      .setAudience('lora-router')
      .setIssuedAt()
      .sign(new TextEncoder().encode(secret));
    expect(await errorOf(await t.anonymous.withToken(forever).raw('POST', `machines/${id}/heartbeat`, { body: heartbeat('ttlpool', 1) }))).toMatchObject({ status: 401 });
  });
});

// The scheduler tick and the reaper against the real stores: racing passes over hundreds of jobs never double-assign
// or double-dispatch, lost attempts back off and fail after JOB_MAX_ATTEMPTS, and bad scheduler settings stop startup.
// Passes run in-process (the same core the timer runs) so several can race, and on a clock the test controls.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ApiClient } from '../../api-client/index.js';
import { newJobId } from '../../contract/ids.js';
import { submitJobRequestSchema } from '../../contract/jobs.js';
import type { Heartbeat } from '../../contract/machines.js';
import { newJobDoc } from '../../functions/core/jobs/intake.js';
import { AzureClients } from '../../functions/adapters/azure-clients.js';
import { loadConfig, type Config } from '../../functions/core/config.js';
import { depsFromClients, type CoreDeps } from '../../functions/core/deps.js';
import { mapLimit } from '../../functions/core/map-limit.js';
import type { JobDoc } from '../../functions/core/jobs/model.js';
import { readJob } from '../../functions/core/jobs/store.js';
import { recordHeartbeat } from '../../functions/core/machines/store.js';
import { runReaper } from '../../functions/core/tick/reaper.js';
import { schedulerSettings } from '../../functions/core/tick/settings.js';
import { readFleetSnapshot, runSchedulerTick, type TickResult } from '../../functions/core/tick/tick.js';
import { startDevHostProcess } from '../../local/stack.js';
import { startTestHost, testSettings, type TestHost } from '../support/stack.js';
import { heartbeat, runTimer, suffix, TestMachine } from './jobs.fixtures.js';

let t: TestHost;
let admin: ApiClient;
const extraClients: AzureClients[] = [];
const machines: TestMachine[] = [];

beforeAll(async () => {
  t = await startTestHost({ TENANT_MAX_ACTIVE_JOBS: '100000', PLACEMENT_ON_EVENTS: 'false' }, { timers: false });
  admin = await t.as('ops', 'admin');
});
afterAll(async () => {
  for (const m of machines) await m.close();
  for (const c of extraClients) await c.close();
  await t?.stop();
});

async function machine(id: string, pool: string, slots: number): Promise<TestMachine> {
  const m = await TestMachine.register(t, admin, `${id}-${suffix()}`, pool, slots);
  machines.push(m);
  return m;
}

/** Core dependencies over their own SDK clients, as a second Functions instance would have them. */
function separateDeps(overrides: Partial<CoreDeps> = {}): CoreDeps {
  const clients = new AzureClients(loadConfig(t.settings));
  extraClients.push(clients);
  return depsFromClients(clients, overrides);
}

async function jobsOf(deps: CoreDeps, tenant: string): Promise<JobDoc[]> {
  const { resources } = await deps.jobs.items
    .query<JobDoc>({ query: 'SELECT * FROM c WHERE c.tenant_id = @t AND c.doc_type = "job"', parameters: [{ name: '@t', value: tenant }] })
    .fetchAll();
  return resources;
}

describe('lost attempts (reaper on a controlled clock)', () => {
  it('re-routes a lost job at once to another machine, backs off on the next loss, and fails after 3 attempts', async () => {
    const tenant = `lost-${suffix()}`;
    const user = await t.as(tenant);
    const fleet = await Promise.all(['lost-a', 'lost-b', 'lost-c'].map((n) => machine(n, 'lost', 1)));
    let now = Date.now();
    const deps = separateDeps({ now: () => now });
    const beat = (m: TestMachine, hb: Partial<Heartbeat> = {}) =>
      recordHeartbeat(deps, { role: 'machine', subject: m.id, tenantId: m.id, tokenVersion: 1 }, m.id, { ...heartbeat('lost', 1), ...hb });
    const t0 = now;
    const at = (s: number) => (now = t0 + s * 1000);
    for (const m of fleet) await beat(m);

    const { job_id } = await user.post<{ job_id: string }>('jobs', { service_required: 'comfyui', pool: 'lost' });
    const job = () => readJob(deps.jobs, tenant, job_id).then((j) => j!);
    expect((await runSchedulerTick(deps)).assigned).toBe(1);
    const first = await job();
    expect(first).toMatchObject({ status: 'assigned', epoch: 1, attempt: 1 });
    const byId = new Map(fleet.map((m) => [m.id, m]));
    const alive = (...ms: (TestMachine | undefined)[]) => Promise.all(ms.map((m) => beat(m!)));

    // 1st loss: its machine stops beating; the others keep going. Re-routed at once (no backoff), epoch+1.
    const a = byId.get(first.machine_id!)!;
    const others = fleet.filter((m) => m !== a);
    at(8);
    await alive(...others);
    const reap = async () => (await runReaper(deps)).actions.filter((x) => x.job_id === job_id);
    at(10);
    expect(await reap()).toEqual([]); // 10 s silent is still live
    at(11);
    expect(await reap()).toEqual([{ job_id, action: 'machine_lost', outcome: 'pending' }]);
    expect(await job()).toMatchObject({ status: 'pending', epoch: 2, attempt: 2, machine_id: null, avoid_machines: [a.id] });
    expect((await runSchedulerTick(deps)).assigned).toBe(1);
    const second = await job();
    expect(second).toMatchObject({ status: 'assigned', epoch: 3, attempt: 2 });
    expect(second.machine_id).not.toBe(a.id);

    // 2nd loss: backoff 2 s (base 2 × 2^0) before the next attempt; the job avoids both lost machines.
    const b = byId.get(second.machine_id!)!;
    const c = others.find((m) => m !== b)!;
    at(18);
    await alive(a, c);
    at(22);
    expect(await reap()).toEqual([{ job_id, action: 'machine_lost', outcome: 'pending' }]);
    const third = await job();
    expect(third).toMatchObject({ status: 'pending', epoch: 4, attempt: 3 });
    expect(Date.parse(third.not_before!)).toBe(now + 2000);
    expect((await runSchedulerTick(deps)).assigned).toBe(0);
    at(24.5);
    await alive(a, c);
    expect((await runSchedulerTick(deps)).assigned).toBe(1);
    expect(await job()).toMatchObject({ status: 'assigned', epoch: 5, machine_id: c.id });

    // 3rd loss: attempts spent → failed, epoch kept.
    at(30);
    await alive(a, b);
    at(36);
    expect(await reap()).toEqual([{ job_id, action: 'machine_lost', outcome: 'failed' }]);
    const last = await job();
    expect(last).toMatchObject({ status: 'failed', epoch: 5, attempt: 3 });
    expect(last.error).toMatch(/no attempts left/);
    // The machine that lost it is told to stop when it comes back.
    at(37);
    expect((await beat(c, { running_jobs: [{ job_id, epoch: 5 }] })).stop_jobs).toEqual([{ job_id, epoch: 5 }]);
    for (const m of fleet) await m.drain(100);
  });

  it('re-routes an assigned job its live machine never claimed after CLAIM_TIMEOUT_SECONDS (same attempt, epoch+1)', async () => {
    const tenant = `unclaimed-${suffix()}`;
    const user = await t.as(tenant);
    const fleet = await Promise.all(['idle-a', 'idle-b'].map((n) => machine(n, 'idle', 1)));
    let now = Date.now();
    const deps = separateDeps({ now: () => now });
    const t0 = now;
    const beatAll = () =>
      Promise.all(fleet.map((m) => recordHeartbeat(deps, { role: 'machine', subject: m.id, tenantId: m.id, tokenVersion: 1 }, m.id, heartbeat('idle', 1))));
    await beatAll();
    const { job_id } = await user.post<{ job_id: string }>('jobs', { service_required: 'comfyui', pool: 'idle' });
    await runSchedulerTick(deps);
    const first = (await readJob(deps.jobs, tenant, job_id))!;
    expect(first.status).toBe('assigned');
    now = t0 + 25_000;
    await beatAll();
    const reap = async () => (await runReaper(deps)).actions.filter((x) => x.job_id === job_id);
    expect(await reap()).toEqual([]);
    now = t0 + 31_000; // CLAIM_TIMEOUT_SECONDS defaults to 30
    await beatAll();
    expect(await reap()).toEqual([{ job_id, action: 'claim_timeout', outcome: 'pending' }]);
    expect(await readJob(deps.jobs, tenant, job_id)).toMatchObject({ status: 'pending', epoch: 2, attempt: 1, avoid_machines: [first.machine_id] });
    await runSchedulerTick(deps);
    const second = (await readJob(deps.jobs, tenant, job_id))!;
    expect(second).toMatchObject({ status: 'assigned', epoch: 3 });
    expect(second.machine_id).not.toBe(first.machine_id);
    // The slow machine's late claim of the old epoch is fenced off.
    const slow = fleet.find((m) => m.id === first.machine_id)!;
    expect((await slow.claim(job_id, 1)).status).toBe(409);
    for (const m of fleet) await m.drain(100);
  });
});

describe('racing scheduler passes', () => {
  it('300 jobs, three passes at once (two in-process instances + the host timer): each job assigned and dispatched exactly once', async () => {
    const JOBS = 300;
    const tenant = `race-${suffix()}`;
    const user = await t.as(tenant);
    const fleet = await Promise.all(Array.from({ length: 10 }, (_, i) => machine(`race-${i}`, 'race', 32)));
    await Promise.all(fleet.map((m) => m.beat()));
    // The agents keep beating (every 5 s in production) while the test runs.
    const beating = setInterval(() => void Promise.all(fleet.map((m) => m.beat())).catch(() => {}), 2_000);
    // Intake over HTTP is covered elsewhere; here the jobs go straight into the store as intake writes them (the
    // emulator answers intake's per-tenant count slowly once it holds hundreds of jobs).
    const t1 = Date.now();
    const seeder = separateDeps();
    await mapLimit(Array.from({ length: JOBS }, (_, i) => i), 16, (i) =>
      seeder.jobs.items.create(
        newJobDoc({
          id: newJobId(),
          tenantId: tenant,
          body: submitJobRequestSchema.parse({ service_required: 'comfyui', pool: 'race', payload: { i } }),
          loras: [],
          requestHash: null,
          nowMs: Date.now() + i,
          maxAttempts: 3,
        }),
      ),
    );
    console.log(`[race] ${JOBS} jobs stored in ${Date.now() - t1} ms`);
    expect((await user.get<{ jobs: unknown[] }>('jobs?status=pending&limit=500')).jobs).toHaveLength(JOBS);

    const one = separateDeps();
    const two = separateDeps();
    const results: TickResult[] = [];
    let rounds = 0;
    const started = Date.now();
    for (; rounds < 6; rounds++) {
      const [a, b] = await Promise.all([runSchedulerTick(one), runSchedulerTick(two), runTimer(t, 'schedulerTick')]);
      results.push(a, b);
      console.log(`[race] round ${rounds + 1}: ${JSON.stringify(a)} | ${JSON.stringify(b)} at ${Date.now() - started} ms`);
      if ((await jobsOf(one, tenant)).every((j) => j.status !== 'pending')) break;
    }
    const ms = Date.now() - started;
    clearInterval(beating);
    const lostRaces = results.reduce((n, r) => n + r.lost_races, 0);
    const assignedHere = results.reduce((n, r) => n + r.assigned, 0);

    const jobs = await jobsOf(one, tenant);
    expect(jobs).toHaveLength(JOBS);
    for (const j of jobs) {
      expect(j, j.id).toMatchObject({ status: 'assigned', epoch: 1, assignments: 1 });
    }
    const perMachine = new Map<string, number>();
    for (const j of jobs) perMachine.set(j.machine_id!, (perMachine.get(j.machine_id!) ?? 0) + 1);
    for (const m of fleet) expect(perMachine.get(m.id) ?? 0).toBeLessThanOrEqual(32);

    // Every dispatch message on every machine queue: exactly one per job, on the machine the job is assigned to.
    const messages: { machine: string; job_id: string; epoch: number }[] = [];
    for (const m of fleet) for (const msg of await m.drain(300)) messages.push({ machine: m.id, ...msg });
    const byJob = new Map(jobs.map((j) => [j.id, j]));
    const keys = messages.map((x) => `${x.job_id}:${x.epoch}`);
    const duplicates = keys.length - new Set(keys).size;
    console.log(
      `[race] ${JOBS} jobs, ${rounds + 1} round(s) of 3 concurrent passes in ${ms} ms: ${assignedHere} assigned in-process, ${lostRaces} lost races, ${messages.length} messages, ${duplicates} duplicates`,
    );
    expect(duplicates).toBe(0);
    expect(messages).toHaveLength(JOBS);
    for (const x of messages) expect(byJob.get(x.job_id)?.machine_id).toBe(x.machine);
    // The passes really did race for the same jobs (each plans the same snapshot).
    expect(lostRaces).toBeGreaterThan(0);
  }, 180_000);

  it('never gives a machine more jobs than slots, even when racing passes plan from the same snapshot', async () => {
    const tenant = `slots-${suffix()}`;
    const user = await t.as(tenant);
    const fleet = await Promise.all([machine('tight-a', 'tight', 3), machine('tight-b', 'tight', 2)]);
    await Promise.all(fleet.map((m) => m.beat()));
    await mapLimit(Array.from({ length: 20 }, (_, i) => i), 8, (i) => user.post('jobs', { service_required: 'comfyui', pool: 'tight', payload: { i } }));
    const deps = [separateDeps(), separateDeps(), separateDeps()];
    await Promise.all([...deps.map((d) => runSchedulerTick(d)), runTimer(t, 'schedulerTick')]);
    await Promise.all(deps.map((d) => runSchedulerTick(d)));
    const jobs = await jobsOf(deps[0]!, tenant);
    const assigned = jobs.filter((j) => j.status === 'assigned');
    expect(assigned).toHaveLength(5);
    expect(assigned.filter((j) => j.machine_id === fleet[0]!.id)).toHaveLength(3);
    expect(assigned.filter((j) => j.machine_id === fleet[1]!.id)).toHaveLength(2);
    expect((await fleet[0]!.drain()).length + (await fleet[1]!.drain()).length).toBe(5);
    for (const j of jobs) await user.delete(`jobs/${j.id}`);
  });
});

describe('slot ledger from a snapshot', () => {
  it('a pass planning from a snapshot read before another pass filled the machine does not over-fill it', async () => {
    const tenant = `stale-${suffix()}`;
    const user = await t.as(tenant);
    const m = await machine('stale-a', 'stale', 1);
    await m.beat();
    const deps = separateDeps();
    const post = async () => (await user.post<{ job_id: string }>('jobs', { service_required: 'comfyui', pool: 'stale', payload: {} })).job_id;
    const first = await post();
    const stale = await readFleetSnapshot(deps); // the machine's one slot is free here
    await runSchedulerTick(deps, { jobs: [(await readJob(deps.jobs, tenant, first))!] });
    expect((await readJob(deps.jobs, tenant, first))!.status).toBe('assigned');
    const second = await post();
    // Planned on the old view (slot free, ledger empty): the ledger's ETag has moved, so the CAS fails, the stored
    // ledger is read, and its holder (first, assigned) keeps the slot.
    const r = await runSchedulerTick(deps, { jobs: [(await readJob(deps.jobs, tenant, second))!], snapshot: stale });
    expect([r.planned, r.assigned, r.no_slot]).toEqual([1, 0, 1]);
    expect((await readJob(deps.jobs, tenant, second))!.status).toBe('pending');
    expect(await m.drain()).toEqual([{ job_id: first, epoch: 1 }]);
    for (const id of [first, second]) await user.delete(`jobs/${id}`);
  });
});

describe('scheduler settings', () => {
  const cfg = (policy: string, weights: Record<string, number> = {}) =>
    ({ schedulerPolicy: policy, schedulerWeights: weights }) as Pick<Config, 'schedulerPolicy' | 'schedulerWeights'>;

  it('accepts the policies and weights of the scheduler core', () => {
    expect(schedulerSettings(cfg('adr010', { userHit: 12 })).weights.userHit).toBe(12);
    expect(() => schedulerSettings(cfg('fastest'))).toThrow(/SCHEDULER_POLICY: Unknown scheduler policy "fastest". Valid policies: affinity, adr010, fifo/);
    expect(() => schedulerSettings(cfg('affinity', { hitt: 1 }))).toThrow(/SCHEDULER_WEIGHTS: Unknown scheduler weight "hitt"/);
    expect(() => schedulerSettings(cfg('affinity', { loadBound: 0.5 }))).toThrow(/SCHEDULER_WEIGHTS: .*"loadBound" must be ≥ 1/);
  });

  it('the host refuses to start with a bad SCHEDULER_POLICY, naming it', async () => {
    const message = /Invalid app setting SCHEDULER_POLICY: Unknown scheduler policy "fastest"/;
    const settings = { ...testSettings(), SCHEDULER_POLICY: 'fastest' };
    const err = await startDevHostProcess(settings, { timers: false, logLevel: 'warn' }).then(
      async (h) => {
        await h.stop();
        return null;
      },
      (e: Error) => e,
    );
    expect(err?.message).toMatch(message);
  });
});

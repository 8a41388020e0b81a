// Predictive pre-warm hints end to end (issue 14 item 4) over the real dev host (scheduler timer every second, with
// PREWARM_HINTS on), Azurite + cosmosdb-server and real agent processes. The thresholds are set to 0, so every LoRA
// with demand earns a copy on its next HRW home that lacks it: the hint pass itself, the demand document (CAS), the
// heartbeat answer and the agent's low-priority fetch are the real ones.
// Machine A runs the jobs (it is alone at first, so it holds every LoRA); then machine B joins with a 1 MiB budget and a
// pinned LoRA. B is the only machine lacking the LoRAs, so the hints go to B: X (two jobs) first, which fits; then Y
// (one job), which would need X evicted, a LoRA fetched seconds ago: B declines it (PREWARM_HINT_MIN_IDLE_SECONDS).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ApiClient } from '../../api-client/index.js';
import type { MachineDetail } from '../../contract/machines.js';
import { SHARED_OWNER } from '../../functions/core/loras/records.js';
import { DEMAND_DOC_ID, type DemandDoc } from '../../functions/core/tick/prewarm-pass.js';
import { getJob, until } from '../support/helpers.js';
import { startTestHost, type TestHost } from '../support/stack.js';
import { startTestFleet, type TestFleet } from '../support/test-agents.js';
import { seedRealLora, type SeededLora } from './agent.fixtures.js';
import { suffix } from './jobs.fixtures.js';
import { uploadMultipart } from './loras.fixtures.js';
import { hrwTopK, loraSeed, machineSeed } from '../../functions/core/scheduler/hash.js';
import { makeSafetensors } from '../../testkit/safetensors.js';

const KIB = 1024;
let t: TestHost;
let admin: ApiClient;
let user: ApiClient;
let fleet: TestFleet;

beforeAll(async () => {
  t = await startTestHost(
    { SCHEDULER_SCHEDULE: '*/1 * * * * *', PREWARM_HINTS: 'true', PREWARM_HEADROOM: '0', PREWARM_MIN_COLD_NEED: '0' },
    { timers: true },
  );
  admin = await t.as('pw-ops', 'admin');
  user = await t.as('pw-user');
  fleet = await startTestFleet(t, 0, { prefix: 'pw' });
}, 120_000);
afterAll(async () => {
  await fleet?.stop();
  await t?.stop();
});

const detail = (id: string) => admin.get<MachineDetail>(`machines/${id}`);
const has = (d: MachineDetail, l: SeededLora) => (l.kind === 'user' ? d.cached.user : d.cached.shared).includes(l.key);

async function runJob(pool: string, l: SeededLora): Promise<void> {
  const { job_id } = await user.post<{ job_id: string }>('jobs', { service_required: 'open-loras', pool, payload: {}, requirements: { loras: [l.requirement] } });
  await until(`job ${job_id} succeeded`, async () => ((await getJob(user, job_id)).status === 'succeeded' ? true : null), 30_000, 200, () => fleet.logs());
}

describe('pre-warm hints', () => {
  it('a hinted LoRA is fetched within the budget; a hint that would evict a recently used LoRA is declined', async () => {
    const pool = `pw${suffix()}`.slice(0, 20);
    const X = await seedRealLora(t, { owner: 'pw-user', dataBytes: 300 * KIB, seed: 11 });
    const Y = await seedRealLora(t, { owner: 'pw-user', dataBytes: 600 * KIB, seed: 12 });
    const P = await seedRealLora(t, { owner: SHARED_OWNER, dataBytes: 200 * KIB, filename: `pin-${suffix()}.safetensors`, seed: 13 });
    const budget = 1024 * KIB;
    expect(P.size + X.size).toBeLessThanOrEqual(budget);
    expect(P.size + X.size + Y.size).toBeGreaterThan(budget); // Y fits only if X goes (P is pinned)

    const a = await fleet.add(`pw-a-${suffix()}`, { pool, budgetBytes: 64 * 1024 * KIB });
    await runJob(pool, X);
    await runJob(pool, X);
    await runJob(pool, Y);

    const b = await fleet.add(`pw-b-${suffix()}`, { pool, budgetBytes: budget, env: { PINNED_LORAS: P.key } });
    await admin.post('machines/prewarm', { lora: { kind: P.kind, key: P.key }, machine_ids: [b.machineId] });

    // X: hinted to B (the only machine without it), fetched, and within the budget with the pinned P kept.
    const warm = await until('B holds the hinted X and the pinned P', async () => {
      const d = await detail(b.machineId);
      return has(d, X) && has(d, P) ? d : null;
    }, 60_000, 250, () => fleet.logs());
    expect(b.output()).toMatch(new RegExp(`"key":"${X.key}"[^\\n]*"msg":"pre-warm hint fetched"|pre-warm hint fetched[^\\n]*${X.key}`));

    // Y: hinted next (one hint per machine at a time), declined: it would evict X, used moments ago.
    await until('B declined the hint for Y', async () => (new RegExp(`pre-warm hint declined[^\\n]*${Y.key}|"key":"${Y.key}"[^\\n]*pre-warm hint declined`).test(b.output()) ? true : null), 60_000, 250, () => fleet.logs());
    const after = await detail(b.machineId);
    expect(has(after, X)).toBe(true);
    expect(has(after, P)).toBe(true);
    expect(has(after, Y)).toBe(false);
    expect(after.cache!.used_bytes).toBe(P.size + X.size);
    expect(after.cache!.used_bytes).toBeLessThanOrEqual(after.cache!.budget_bytes);
    expect(after.cache!.budget_bytes).toBe(budget);
    expect(after.cache!.counters.evictions).toBe(0);
    expect(warm.cache!.used_bytes).toBeLessThanOrEqual(budget);
    // A never lacked either LoRA, so it was never hinted; the demand document (CAS-written by the timer) names both hints.
    expect(a.output()).not.toMatch(/pre-warm hint/);
    const { resource: demand } = await t.clients.cosmosContainers.machines.item(DEMAND_DOC_ID, DEMAND_DOC_ID).read<DemandDoc>();
    const keys = demand!.demand.entries.filter((e) => e.pool === pool).map((e) => e.key);
    expect(keys).toEqual(expect.arrayContaining([X.key, Y.key]));
    expect(demand!.hinted.filter((h) => h.machine_id === b.machineId).map((h) => h.key)).toEqual(expect.arrayContaining([X.key, Y.key]));
  }, 180_000);

  it('a LoRA a user has just uploaded is fetched by its HRW home before its first job, which then starts on a hit', async () => {
    const pool = `pu${suffix()}`.slice(0, 20);
    const uploader = await t.as('pw-uploader');
    const S = await seedRealLora(t, { owner: 'pw-uploader', dataBytes: 100 * KIB, seed: 21 });
    const a = await fleet.add(`pu-a-${suffix()}`, { pool, budgetBytes: 64 * 1024 * KIB });
    const b = await fleet.add(`pu-b-${suffix()}`, { pool, budgetBytes: 64 * 1024 * KIB });
    const submit = async (l: { requirement: unknown }) => {
      const { job_id } = await uploader.post<{ job_id: string }>('jobs', { service_required: 'open-loras', pool, payload: {}, requirements: { loras: [l.requirement] } });
      return until(`job ${job_id} succeeded`, async () => {
        const j = await getJob(uploader, job_id);
        return j.status === 'succeeded' ? j : null;
      }, 30_000, 200, () => fleet.logs());
    };
    // The uploader's latest job ran in `pool`: that is where its upload is hinted. (With the thresholds at 0 the demand
    // pass copies S to the other machine too; wait for it, so no hint is outstanding when the upload comes.)
    await submit(S);
    await until('both machines hold S', async () => (has(await detail(a.machineId), S) && has(await detail(b.machineId), S) ? true : null), 60_000, 250, () => fleet.logs());

    const res = await uploadMultipart(uploader, makeSafetensors({ dataBytes: 200 * KIB, seed: 22 }), 'fresh.safetensors');
    expect(res.status).toBe(201);
    const key = (res.body as { flat_file_id: string }).flat_file_id;
    const U = { kind: 'user' as const, key, requirement: { type: 'user', flat_file_id: key } };
    const ids = [a.machineId, b.machineId];
    const [homeIndex] = hrwTopK(loraSeed('user', key), [0, 1], ids.map(machineSeed), 1);
    const home = [a, b][homeIndex!]!;
    const other = [a, b][1 - homeIndex!]!;

    // No job has asked for U, so the demand pass has nothing to say about it: only the upload's hint can bring it.
    const warm = await until('the HRW home holds the uploaded LoRA', async () => {
      const d = await detail(home.machineId);
      return (d.cached.user as string[]).includes(key) ? d : null;
    }, 60_000, 250, () => fleet.logs());
    expect(home.output()).toMatch(new RegExp(`pre-warm hint fetched[^\\n]*${key}|"key":"${key}"[^\\n]*pre-warm hint fetched`));
    expect(((await detail(other.machineId)).cached.user as string[]).includes(key)).toBe(false);

    // Its first job goes to the holder and downloads nothing there.
    const downloadsBefore = warm.cache!.counters.downloads;
    const hitsBefore = warm.cache!.counters.hits;
    const job = await submit(U);
    expect(job.machine_id).toBe(home.machineId);
    const after = await until('the home reports the hit', async () => {
      const d = await detail(home.machineId);
      return d.cache!.counters.hits > hitsBefore ? d : null;
    }, 30_000, 250, () => fleet.logs());
    expect(after.cache!.counters.downloads).toBe(downloadsBefore);
  }, 180_000);
});

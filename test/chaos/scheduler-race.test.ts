// Two scheduler instances racing: two dev Functions hosts (two processes, each its own Cosmos client and dispatch
// sender) over the same Cosmos database and queues, their scheduler ticks fired at the same moments, again and again,
// over 2000 pending jobs (CHAOS_RACE_JOBS to change it) and 40 machines (registered and heartbeating through
// the public API).
// Asserted exactly: every job assigned once (epoch 1), one dispatch message per assignment on the right machine's
// queue, no machine over its slots.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiClient } from '../../api-client/index.js';
import type { JobDoc } from '../../functions/core/jobs/model.js';
import { newJobDoc } from '../../functions/core/jobs/intake.js';
import { newJobId } from '../../contract/ids.js';
import { AzureClients } from '../../functions/adapters/azure-clients.js';
import { issueDevToken } from '../../functions/core/auth.js';
import { loadConfig } from '../../functions/core/config.js';
import { provisionLocal, startDevHostProcess, type DevHostProcess } from '../../local/stack.js';
import { testSettings } from '../support/stack.js';
import { mapLimit } from '../e2e/helpers.js';

const JOBS = Number(process.env.CHAOS_RACE_JOBS ?? 2000);
/** Submitted through POST /api/jobs; the rest are written as intake writes them (newJobDoc), which is much faster on a
 * 2-core CI box than 2000 HTTP submissions (each runs a quota query), and intake is not what this test is about. */
const VIA_API = Math.min(100, JOBS);
const MACHINES = 40;
const SLOTS = Math.ceil((JOBS * 1.25) / MACHINES); // 25 % more slots than jobs: every job can be placed, so "assigned once" is checked for all of them

let settings: Record<string, string>;
let hosts: DevHostProcess[] = [];
let clients: AzureClients;
const t0 = Date.now();

beforeAll(async () => {
  settings = testSettings({
    TENANT_MAX_ACTIVE_JOBS: '1000000',
    MACHINE_LIVENESS_SECONDS: '600', // no heartbeat loop needed while the passes run
    CLAIM_TIMEOUT_SECONDS: '3600', // no agent claims here; the reaper must not re-route (it is not running anyway)
    SCHEDULER_POLICY: 'affinity',
  });
  await provisionLocal(settings);
  hosts = await Promise.all([0, 1].map(() => startDevHostProcess(settings, { timers: false, logLevel: 'info' })));
  clients = new AzureClients(loadConfig(settings));
});

afterAll(async () => {
  await Promise.all(hosts.map((h) => h.stop()));
  await clients?.close();
  console.log(`[chaos] scheduler-race file took ${((Date.now() - t0) / 1000).toFixed(1)} s`);
});

function tickTotals(h: DevHostProcess): { passes: number; assigned: number; lost_races: number; no_slot: number } {
  const out = { passes: 0, assigned: 0, lost_races: 0, no_slot: 0 };
  for (const line of h.output().split('\n')) {
    if (!line.includes('"msg":"scheduler tick"')) continue;
    const r = JSON.parse(line) as { assigned: number; lost_races: number; no_slot: number };
    out.passes++;
    out.assigned += r.assigned;
    out.lost_races += r.lost_races;
    out.no_slot += r.no_slot;
  }
  return out;
}

describe('d. two scheduler instances racing', () => {
  it(`assign each of ${JOBS} jobs exactly once, with one dispatch message each`, async () => {
    // The race is real when both instances lose some CAS races (printed as lost_races below).
    const secret = settings.AUTH_DEV_SECRET!;
    const api = (h: DevHostProcess, token: string) => new ApiClient({ baseUrl: `${h.url}/api`, token });
    const adminToken = await issueDevToken(secret, 'race-admin', 'admin');
    // Spread the work over both hosts, as a load balancer would.
    const admins = hosts.map((h) => api(h, adminToken));
    const users = await Promise.all(['race-a', 'race-b', 'race-c', 'race-d'].map((u) => issueDevToken(secret, u, 'user')));

    const machineIds = Array.from({ length: MACHINES }, (_, i) => `race-${String(i + 1).padStart(3, '0')}`);
    await mapLimit(machineIds, 16, async (id, i) => {
      const { token } = await admins[i % 2]!.post<{ token: string }>('machines', { machine_id: id, pool: 'standard', slots: SLOTS });
      await api(hosts[(i + 1) % 2]!, token).post(`machines/${id}/heartbeat`, {
        pool: 'standard',
        slots: SLOTS,
        running_jobs: [],
        cached_loras: { user: [], shared: [] },
        cache: { budget_bytes: 1024 ** 3, used_bytes: 0, free_disk_bytes: 100 * 1024 ** 3, counters: { hits: 0, misses: 0, downloads: 0, bytes_downloaded: 0, evictions: 0, thrash: 0 } },
        draining: false,
        agent_version: 'race-test',
      });
    });

    const submitStart = Date.now();
    const viaApi = await mapLimit(Array.from({ length: VIA_API }, (_, i) => i), 16, async (i) => {
      const client = api(hosts[i % 2]!, users[i % users.length]!);
      const r = await client.post<{ job_id: string }>('jobs', { service_required: 'image-gen', payload: { n: i } });
      return r.job_id;
    });
    const seeded = await mapLimit(Array.from({ length: JOBS - VIA_API }, (_, i) => i + VIA_API), 24, async (i) => {
      const doc = newJobDoc({
        id: newJobId(),
        tenantId: ['race-a', 'race-b', 'race-c', 'race-d'][i % 4]!,
        body: { service_required: 'image-gen', pool: 'standard', priority: 5, payload: { n: i }, requirements: { loras: [] } },
        loras: [],
        requestHash: null,
        nowMs: Date.now(),
        maxAttempts: 3,
      });
      await clients.cosmosContainers.jobs.items.create(doc);
      return doc.id;
    });
    const ids = [...viaApi, ...seeded];
    const submitMs = Date.now() - submitStart;
    console.log(`[chaos] scheduler-race: ${MACHINES} machines registered, ${JOBS} jobs pending (${VIA_API} via the API) in ${(submitMs / 1000).toFixed(1)} s`);
    expect(new Set(ids).size).toBe(JOBS);

    // Fire both instances' ticks at the same moment, round after round, until nothing is pending.
    const fire = (h: DevHostProcess) =>
      fetch(`${h.url}/admin/functions/schedulerTick`, { method: 'POST', body: '{}', headers: { 'x-functions-key': h.adminKey } }).then((r) => expect(r.status).toBe(202));
    const raceStart = Date.now();
    let rounds = 0;
    let pending = JOBS;
    while (pending > 0 && rounds < 40) {
      rounds++;
      await Promise.all(hosts.map(fire));
      const { resources } = await clients.cosmosContainers.jobs.items
        .query<{ id: string }>('SELECT c.id FROM c WHERE c.doc_type = "job" AND c.status = "pending"')
        .fetchAll();
      pending = resources.length;
      console.log(`[chaos] scheduler-race round ${rounds}: ${pending} pending after ${((Date.now() - raceStart) / 1000).toFixed(1)} s`);
    }
    const raceMs = Date.now() - raceStart;
    expect(pending).toBe(0);

    // Stored state: every job assigned exactly once.
    const { resources: docs } = await clients.cosmosContainers.jobs.items
      .query<Pick<JobDoc, 'id' | 'status' | 'epoch' | 'machine_id' | 'assignments'>>(
        'SELECT c.id, c.status, c.epoch, c.machine_id, c.assignments FROM c WHERE c.doc_type = "job"',
      )
      .fetchAll();
    expect(docs).toHaveLength(JOBS);
    const notOnce = docs.filter((d) => d.status !== 'assigned' || d.epoch !== 1 || d.assignments !== 1 || !d.machine_id);
    expect(notOnce.slice(0, 5)).toEqual([]);
    const perMachine = new Map<string, number>();
    for (const d of docs) perMachine.set(d.machine_id!, (perMachine.get(d.machine_id!) ?? 0) + 1);
    const maxLoad = Math.max(...perMachine.values());
    expect(maxLoad).toBeLessThanOrEqual(SLOTS);

    // Dispatch: exactly one message per assignment, on the assigned machine's queue, with the assigned epoch.
    const byJob = new Map(docs.map((d) => [d.id, d]));
    const messages = new Map<string, number>();
    let wrong = 0;
    await mapLimit(machineIds, 16, async (m) => {
      const q = clients.queueService.getQueueClient(`${settings.DISPATCH_QUEUE_PREFIX}${m}`);
      for (;;) {
        const got = await q.receiveMessages({ numberOfMessages: 32, visibilityTimeout: 300 });
        if (got.receivedMessageItems.length === 0) return;
        for (const item of got.receivedMessageItems) {
          const msg = JSON.parse(Buffer.from(item.messageText, 'base64').toString('utf8')) as { job_id: string; epoch: number };
          messages.set(msg.job_id, (messages.get(msg.job_id) ?? 0) + 1);
          const d = byJob.get(msg.job_id);
          if (!d || d.machine_id !== m || d.epoch !== msg.epoch) wrong++;
        }
      }
    });
    const duplicates = [...messages.values()].reduce((a, n) => a + Math.max(0, n - 1), 0);
    const missing = docs.filter((d) => !messages.has(d.id)).length;

    const [a, b] = hosts.map(tickTotals);
    console.log(
      `[chaos] scheduler-race jobs=${JOBS} machines=${MACHINES}x${SLOTS} rounds=${rounds} race_time=${(raceMs / 1000).toFixed(1)}s ` +
        `(submit ${(submitMs / 1000).toFixed(1)}s) instanceA assigned=${a!.assigned} lost_races=${a!.lost_races} instanceB assigned=${b!.assigned} ` +
        `lost_races=${b!.lost_races} double_assignments=${docs.length - new Set(docs.map((d) => d.id)).size + notOnce.length} ` +
        `messages=${[...messages.values()].reduce((x, y) => x + y, 0)} duplicate_messages=${duplicates} missing_messages=${missing} wrong_queue=${wrong} max_load=${maxLoad}/${SLOTS}`,
    );
    expect(a!.assigned + b!.assigned).toBe(JOBS);
    expect(duplicates).toBe(0);
    expect(missing).toBe(0);
    expect(wrong).toBe(0);
  }, 420_000);
});

// Fleet views for operators: machines, pool capacity with an estimated wait, and routing/cache metrics.
import { emptyCounters, type MachineView } from '../../../contract/machines.js';
import { DEFAULT_EXPECTED_JOB_SECONDS, estimateWaitSeconds, poolLoads, type MachineState } from '../scheduler/index.js';
import type { CoreDeps } from '../deps.js';
import { ACTIVE_STATUSES, slotSeconds, type FinishedRow, type JobDoc } from '../jobs/model.js';
import { acceptsWork, isLive, isReceiving, toMachineView } from './model.js';
import { listMachineDocs } from './store.js';

interface ActiveRow {
  pool: string;
  status: JobDoc['status'];
  machine_id: string | null;
}

async function activeRows(deps: CoreDeps): Promise<ActiveRow[]> {
  const { resources } = await deps.jobs.items
    .query<ActiveRow>(
      `SELECT c.pool, c.status, c.machine_id FROM c WHERE c.doc_type = "job" AND c.status IN (${ACTIVE_STATUSES.map((s) => `"${s}"`).join(',')})`,
    )
    .fetchAll();
  return resources;
}

export async function listMachines(deps: CoreDeps): Promise<MachineView[]> {
  const [machines, rows] = await Promise.all([listMachineDocs(deps.machines), activeRows(deps)]);
  const running = new Map<string, number>();
  for (const r of rows) if (r.status === 'running' && r.machine_id) running.set(r.machine_id, (running.get(r.machine_id) ?? 0) + 1);
  const now = deps.now();
  return machines
    .sort((a, b) => (a.machine_id < b.machine_id ? -1 : 1))
    .map((m) => toMachineView(m, now, deps.config.machineLivenessSeconds, running.get(m.machine_id) ?? 0));
}

export interface PoolView {
  pool: string;
  machines_live: number;
  slots_total: number;
  slots_busy: number;
  pending_jobs: number;
  estimated_wait_seconds: number | null;
}

/**
 * Mean run time (claim → success, the slot's occupancy: slotSeconds) of jobs that succeeded in the last hour, per pool
 * they ran in (GET /api/pools, the overflow): a job that overflowed counts for the pool whose machine ran it, not the
 * one it was submitted to.
 */
export async function recentRunSeconds(deps: CoreDeps): Promise<Map<string, number>> {
  const since = new Date(deps.now() - 3600_000).toISOString();
  const { resources } = await deps.jobs.items
    .query<FinishedRow & { pool: string; overflow?: { to_pool: string } | null }>({
      query: 'SELECT TOP 1000 c.pool, c.overflow, c.claimed_at, c.started_at, c.finished_at FROM c WHERE c.doc_type = "job" AND c.status = "succeeded" AND c.finished_at >= @since',
      parameters: [{ name: '@since', value: since }],
    })
    .fetchAll();
  const sums = new Map<string, { total: number; n: number }>();
  for (const r of resources) {
    const s = slotSeconds(r);
    if (s === null) continue;
    const pool = r.overflow?.to_pool ?? r.pool;
    const acc = sums.get(pool) ?? { total: 0, n: 0 };
    acc.total += s;
    acc.n++;
    sums.set(pool, acc);
  }
  return new Map([...sums].map(([pool, { total, n }]) => [pool, total / n]));
}

/** The estimate itself lives with the scheduler, which compares it with POOL_OVERFLOW's threshold (overflow.ts). */
export { estimateWaitSeconds };

export async function listPools(deps: CoreDeps): Promise<PoolView[]> {
  const [machines, rows, runSeconds] = await Promise.all([listMachineDocs(deps.machines), activeRows(deps), recentRunSeconds(deps)]);
  const now = deps.now();
  const busy = new Map<string, number>();
  const pending = new Map<string, number>();
  for (const r of rows) {
    if (r.status === 'pending') pending.set(r.pool, (pending.get(r.pool) ?? 0) + 1);
    else if (r.machine_id) busy.set(r.machine_id, (busy.get(r.machine_id) ?? 0) + 1);
  }
  // Counted by the scheduler's own machine filters, as the overflow sees the pools.
  const states: MachineState[] = machines.map((m) => ({
    id: m.machine_id,
    pool: m.pool,
    slots: m.slots,
    busySlots: busy.get(m.machine_id) ?? 0,
    live: isLive(m, now, deps.config.machineLivenessSeconds),
    draining: m.draining,
    receiving: isReceiving(m),
    acceptsWork: acceptsWork(m),
    cachedUser: new Set(),
    cachedShared: new Set(),
    budgetBytes: 0,
    usedBytes: 0,
    downloadBytesPerSecond: 0,
  }));
  return [...poolLoads(states, pending).values()]
    .sort((a, b) => (a.pool < b.pool ? -1 : 1))
    .map((p) => ({ ...p, estimated_wait_seconds: estimateWaitSeconds(p, runSeconds.get(p.pool) ?? DEFAULT_EXPECTED_JOB_SECONDS) }));
}

export interface Metrics {
  window_hours: number;
  jobs_by_status: Record<string, number>;
  assignments_by_policy: Record<string, number>;
  mean_affinity_score: number | null;
  redispatches: number;
  cache: { hits: number; misses: number; hit_rate: number | null; downloads: number; bytes_downloaded: number; evictions: number; thrash: number };
  machines: { registered: number; live: number };
}

/** Over jobs created in the last `windowHours`; cache counters as last reported by every machine's agent. */
export async function computeMetrics(deps: CoreDeps, windowHours: number): Promise<Metrics> {
  const since = new Date(deps.now() - windowHours * 3600_000).toISOString();
  const [rows, machines] = await Promise.all([
    deps.jobs.items
      .query<{ status: string; policy: string | null; affinity_score: number | null; assignments: number; redispatches: number }>({
        query: 'SELECT c.status, c.policy, c.affinity_score, c.assignments, c.redispatches FROM c WHERE c.doc_type = "job" AND c.created_at >= @since',
        parameters: [{ name: '@since', value: since }],
      })
      .fetchAll()
      .then((r) => r.resources),
    listMachineDocs(deps.machines),
  ]);
  const jobs_by_status: Record<string, number> = { pending: 0, assigned: 0, running: 0, succeeded: 0, failed: 0, cancelled: 0 };
  const assignments_by_policy: Record<string, number> = {};
  let scoreSum = 0;
  let scored = 0;
  let redispatches = 0;
  for (const r of rows) {
    jobs_by_status[r.status] = (jobs_by_status[r.status] ?? 0) + 1;
    if (r.policy && r.assignments > 0) assignments_by_policy[r.policy] = (assignments_by_policy[r.policy] ?? 0) + r.assignments;
    if (typeof r.affinity_score === 'number') {
      scoreSum += r.affinity_score;
      scored++;
    }
    redispatches += r.redispatches ?? 0;
  }
  const counters = emptyCounters();
  for (const m of machines) {
    const c = m.cache?.counters;
    if (!c) continue;
    for (const k of Object.keys(counters) as (keyof typeof counters)[]) counters[k] += c[k];
  }
  const lookups = counters.hits + counters.misses;
  const now = deps.now();
  return {
    window_hours: windowHours,
    jobs_by_status,
    assignments_by_policy,
    mean_affinity_score: scored > 0 ? scoreSum / scored : null,
    redispatches,
    cache: { ...counters, hit_rate: lookups > 0 ? counters.hits / lookups : null },
    machines: { registered: machines.length, live: machines.filter((m) => isLive(m, now, deps.config.machineLivenessSeconds)).length },
  };
}

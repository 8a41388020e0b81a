// Cross-pool overflow (issue 14, north-star routing matrix): a job whose own pool is overloaded may run in another pool
// the operator listed for it (POOL_OVERFLOW, overflow-config.ts). Off unless routes are configured.
//   1. The home pass runs as always (schedule()); the home pool keeps first claim on its machines.
//   2. A job it left waiting for capacity (no_capacity, no_machine_in_pool; never one the delay rule holds for a warm
//      machine, nor one in backoff) is widened to its listed pools when its pool's expected wait (pool-wait.ts, the
//      estimate of GET /api/pools, taken before the pass) is over the threshold, or unknown because no machine serves
//      the pool. A target qualifies while its own expected wait is at or under the threshold.
//   3. One more pass per preference rank: each widened job in its next qualifying pool, over the machines as the
//      earlier passes left them. Every filter, scorer, affinity and capacity rule applies there exactly as at home.
// Pure, like the pass: the timer tick, intake placement (tick/tick.ts) and the simulator call it the same way.
import { estimateWaitSeconds, poolLoads } from './pool-wait.js';
import { schedule } from './scheduler.js';
import type { OverflowRoutes } from './overflow-config.js';
import type { SchedulerExtensions } from './pass.js';
import type { Assignment, MachineState, PendingJob, ScheduleResult, SchedulerInput } from './types.js';
import { DEFAULT_EXPECTED_JOB_SECONDS } from './weights.js';

export interface PoolOverflow {
  routes: OverflowRoutes;
  /** A pool whose expected wait is over this overflows; a target must be at or under it. */
  thresholdSeconds: number;
}

/** Whether any route is configured (the caller then needs pending counts per pool). */
export const overflowOn = (o: PoolOverflow | null | undefined): o is PoolOverflow => !!o && o.routes.size > 0;

/** Unassigned jobs of a routed pool that waited for capacity: the ones overflow may widen. */
export function overflowCandidates(input: SchedulerInput, home: ScheduleResult, overflow: PoolOverflow): PendingJob[] {
  const waiting = new Set<string>();
  for (const u of home.unassigned) if (u.reason === 'no_capacity' || u.reason === 'no_machine_in_pool') waiting.add(u.jobId);
  if (waiting.size === 0) return [];
  return input.jobs.filter((j) => waiting.has(j.id) && overflow.routes.has(j.pool));
}

/** Pending jobs per pool, counted from the pass's own jobs (the timer reads all pending jobs). */
export function pendingByPoolOf(jobs: readonly PendingJob[]): Map<string, number> {
  const out = new Map<string, number>();
  for (const j of jobs) out.set(j.pool, (out.get(j.pool) ?? 0) + 1);
  return out;
}

/**
 * Widens the home pass's waiting jobs to their overflow pools (see the file comment). `pendingByPool`: pending jobs per
 * pool for the wait estimate (all of them, not only the pass's: intake places one job). `runSecondsOf`: a pool's mean
 * run time (the control plane passes GET /api/pools' own; default `input.expectedJobSeconds`). Returns the home result
 * with the overflow assignments added (each with its `overflow` note) and those jobs no longer unassigned.
 */
export function widenToOverflowPools(
  input: SchedulerInput,
  home: ScheduleResult,
  overflow: PoolOverflow,
  pendingByPool: ReadonlyMap<string, number>,
  extensions: SchedulerExtensions = {},
  runSecondsOf: (pool: string) => number = () => input.expectedJobSeconds ?? DEFAULT_EXPECTED_JOB_SECONDS,
): ScheduleResult {
  const candidates = overflowCandidates(input, home, overflow);
  if (candidates.length === 0) return home;
  const loads = poolLoads(input.machines, pendingByPool);
  const waits = new Map<string, number | null>();
  const waitOf = (pool: string): number | null => {
    if (!waits.has(pool)) {
      const l = loads.get(pool);
      waits.set(pool, l ? estimateWaitSeconds(l, runSecondsOf(pool)) : null);
    }
    return waits.get(pool)!;
  };
  const limit = overflow.thresholdSeconds;
  const widened: { job: PendingJob; targets: string[] }[] = [];
  for (const job of candidates) {
    const from = waitOf(job.pool);
    if (from !== null && from <= limit) continue;
    const targets = overflow.routes.get(job.pool)!.filter((t) => {
      const w = waitOf(t);
      return w !== null && w <= limit;
    });
    if (targets.length > 0) widened.push({ job, targets });
  }
  if (widened.length === 0) return home;

  // The machines as the home pass left them: its assignments hold slots now.
  let machines = withAssignments(input.machines, home.assignments, input.nowMs);
  const placed = new Set<string>();
  const added: Assignment[] = [];
  for (let rank = 0; ; rank++) {
    const round = widened.filter((w) => !placed.has(w.job.id) && rank < w.targets.length);
    if (round.length === 0) break;
    const result = schedule({ ...input, machines, jobs: round.map((w) => ({ ...w.job, pool: w.targets[rank]! })) }, extensions);
    const byId = new Map(round.map((w) => [w.job.id, w]));
    for (const a of result.assignments) {
      const w = byId.get(a.jobId)!;
      const toPool = w.targets[rank]!;
      placed.add(a.jobId);
      added.push({ ...a, overflow: { fromPool: w.job.pool, toPool, fromWaitSeconds: waitOf(w.job.pool), toWaitSeconds: waitOf(toPool)!, thresholdSeconds: limit } });
    }
    machines = withAssignments(machines, result.assignments, input.nowMs);
  }
  if (added.length === 0) return home;
  return {
    assignments: [...home.assignments, ...added],
    unassigned: home.unassigned.filter((u) => !placed.has(u.jobId)),
  };
}

/** One scheduling pass with cross-pool overflow: the home pass, then `widenToOverflowPools`. */
export function scheduleWithOverflow(
  input: SchedulerInput,
  overflow: PoolOverflow | null | undefined,
  pendingByPool: ReadonlyMap<string, number> = pendingByPoolOf(input.jobs),
  extensions: SchedulerExtensions = {},
): ScheduleResult {
  const home = schedule(input, extensions);
  return overflowOn(overflow) ? widenToOverflowPools(input, home, overflow, pendingByPool, extensions) : home;
}

/** The machines with each assignment's slot taken (and, where known, its start instant recorded). */
function withAssignments(machines: readonly MachineState[], assignments: readonly Assignment[], nowMs: number): MachineState[] {
  if (assignments.length === 0) return machines as MachineState[];
  const taken = new Map<string, number>();
  for (const a of assignments) taken.set(a.machineId, (taken.get(a.machineId) ?? 0) + 1);
  return machines.map((m) => {
    const n = taken.get(m.id);
    if (!n) return m;
    const since = m.busySinceMs ? [...m.busySinceMs, ...new Array<number>(n).fill(nowMs)] : undefined;
    return { ...m, busySlots: m.busySlots + n, ...(since ? { busySinceMs: since } : {}) };
  });
}

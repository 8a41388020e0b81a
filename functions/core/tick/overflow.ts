// Cross-pool overflow in a control-plane pass (the scheduler core's overflow.ts over Cosmos). Off unless POOL_OVERFLOW
// lists routes. A pool's expected wait is GET /api/pools' estimate: the same function (scheduler/pool-wait.ts) over
// the same machines, with the pool's own mean run time of the last hour (read at most once a minute per instance, and
// only when a job of a routed pool waits). The timer counts pending jobs per pool from the pending jobs it read;
// intake, which places the one job it stored, counts the pools concerned (one COUNT query each), again only then.
import type { CoreDeps } from '../deps.js';
import { recentRunSeconds } from '../machines/fleet.js';
import {
  DEFAULT_EXPECTED_JOB_SECONDS,
  overflowCandidates,
  overflowOn,
  pendingByPoolOf,
  widenToOverflowPools,
  type PoolOverflow,
  type ScheduleResult,
  type SchedulerInput,
} from '../scheduler/index.js';

/** The operator's overflow routes and threshold, or null when none is configured. */
export function poolOverflowOf(config: CoreDeps['config']): PoolOverflow | null {
  const o = { routes: config.poolOverflow, thresholdSeconds: config.poolOverflowThresholdSeconds };
  return overflowOn(o) ? o : null;
}

/** How long an instance reuses the per-pool run times. */
export const POOL_RUN_TIME_TTL_MS = 60_000;
const runTimes = new WeakMap<object, { atMs: number; seconds: Map<string, number> }>();

async function poolRunSeconds(deps: CoreDeps): Promise<Map<string, number>> {
  const hit = runTimes.get(deps.jobs);
  if (hit && deps.now() - hit.atMs < POOL_RUN_TIME_TTL_MS) return hit.seconds;
  const seconds = await recentRunSeconds(deps);
  runTimes.set(deps.jobs, { atMs: deps.now(), seconds });
  return seconds;
}

async function countPending(deps: CoreDeps, pools: Iterable<string>): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const pool of pools) {
    const { resources } = await deps.jobs.items
      .query<number>({
        query: 'SELECT VALUE COUNT(1) FROM c WHERE c.doc_type = "job" AND c.status = "pending" AND c.pool = @pool',
        parameters: [{ name: '@pool', value: pool }],
      })
      .fetchAll();
    out.set(pool, resources[0] ?? 0);
  }
  return out;
}

/**
 * The home pass's result with waiting jobs of overloaded pools placed in their overflow pools. `allPending`: the
 * input's jobs are every pending job (the timer), so they are the pending counts; otherwise (intake) they are counted.
 */
export async function withOverflow(deps: CoreDeps, input: SchedulerInput, home: ScheduleResult, allPending: boolean): Promise<ScheduleResult> {
  const overflow = poolOverflowOf(deps.config);
  if (!overflow) return home;
  const candidates = overflowCandidates(input, home, overflow);
  if (candidates.length === 0) return home;
  let pending: Map<string, number>;
  if (allPending) {
    pending = pendingByPoolOf(input.jobs);
  } else {
    const pools = new Set<string>();
    for (const j of candidates) for (const p of [j.pool, ...overflow.routes.get(j.pool)!]) pools.add(p);
    pending = await countPending(deps, pools);
  }
  const runSeconds = await poolRunSeconds(deps);
  return widenToOverflowPools(input, home, overflow, pending, {}, (pool) => runSeconds.get(pool) ?? DEFAULT_EXPECTED_JOB_SECONDS);
}

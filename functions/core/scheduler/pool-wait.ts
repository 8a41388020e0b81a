// A pool's expected wait: the one estimate `GET /api/pools` shows operators and the cross-pool overflow (overflow.ts)
// compares with its threshold. Pure; the fleet view (machines/fleet.ts) and the scheduler both count with it.
import { MACHINE_FILTERS } from './registry.js';
import type { MachineState } from './types.js';

/** What the estimate needs of a pool: machines that may take work, their slots, the busy ones, the jobs waiting. */
export interface PoolLoad {
  pool: string;
  machines_live: number;
  slots_total: number;
  slots_busy: number;
  pending_jobs: number;
}

/**
 * Estimated wait for a job submitted now: 0 while a slot is free; otherwise the number of "waves" the queue ahead
 * needs (jobs beyond the free slots ÷ slots) × the pool's mean run time (seconds). null when no machine that may take
 * work serves the pool.
 */
export function estimateWaitSeconds(p: Omit<PoolLoad, 'pool'>, meanRunSeconds: number): number | null {
  if (p.machines_live === 0 || p.slots_total === 0) return null;
  const free = Math.max(0, p.slots_total - p.slots_busy);
  const ahead = p.pending_jobs - free;
  if (ahead < 0) return 0;
  return Math.round(Math.ceil((ahead + 1) / p.slots_total) * meanRunSeconds);
}

/**
 * Per pool, the load of the machines every registered machine filter accepts (live, not draining, receiving, accepts
 * work: the same machines `GET /api/pools` counts) and the pending jobs. A pool with pending jobs and no such machine
 * is listed with zeros (its wait is null).
 */
export function poolLoads(machines: readonly MachineState[], pendingByPool: ReadonlyMap<string, number>): Map<string, PoolLoad> {
  const loads = new Map<string, PoolLoad>();
  const load = (pool: string): PoolLoad => {
    let p = loads.get(pool);
    if (!p) {
      p = { pool, machines_live: 0, slots_total: 0, slots_busy: 0, pending_jobs: 0 };
      loads.set(pool, p);
    }
    return p;
  };
  for (const m of machines) {
    const p = load(m.pool);
    if (!MACHINE_FILTERS.every((f) => f.accepts(m))) continue;
    p.machines_live++;
    p.slots_total += m.slots;
    p.slots_busy += m.busySlots;
  }
  for (const [pool, n] of pendingByPool) load(pool).pending_jobs += n;
  return loads;
}

// Cross-pool overflow in the simulator: a small P1 (two pools, pool a over capacity), on vs off, invariants checked
// after every event. Checks the model, not the figures in docs/simulator.md (those come from the overflow experiment).
import { describe, expect, it } from 'vitest';
import { parseOverflowRoutes } from '../functions/core/scheduler/index.js';
import { simulate } from './engine.js';
import { quantile } from './metrics.js';
import { WORKLOADS, generateWorkload, machinePool } from './workloads.js';

const spec = { ...WORKLOADS.P1, hours: 0.25 };
const workload = generateWorkload(spec, 3);

function p95ByPool(rec: ReturnType<typeof simulate>, pool: string): number {
  const lat: number[] = [];
  for (let j = 0; j < rec.jobs; j++) if (workload.jobs[j]!.pool === pool) lat.push(rec.startMs[j]! - rec.arrivalMs[j]!);
  return quantile(lat.sort((a, b) => a - b), 0.95);
}

describe('simulator: cross-pool overflow (P1)', () => {
  it('splits machines and jobs into the pools as the spec says', () => {
    expect(Array.from({ length: spec.machines }, (_, i) => machinePool(spec, i)).filter((p) => p === 'a')).toHaveLength(8);
    const a = workload.jobs.filter((j) => j.pool === 'a').length / workload.jobs.length;
    expect(a).toBeGreaterThan(0.5);
    expect(a).toBeLessThan(0.6);
  });

  it.each(['fifo', 'affinity'])('%s: off keeps every job in its pool; on moves some of a’s to b and cuts a’s wait', (policy) => {
    const off = simulate(workload, { policy, checkInvariants: true });
    const on = simulate(workload, { policy, checkInvariants: true, overflow: { routes: parseOverflowRoutes('a>b'), thresholdSeconds: 30 } });
    expect(off.overflowed).toBe(0);
    for (let j = 0; j < off.jobs; j++) expect(machinePool(spec, off.machineOf[j]!)).toBe(workload.jobs[j]!.pool);
    let aOnB = 0;
    for (let j = 0; j < on.jobs; j++) {
      const ran = machinePool(spec, on.machineOf[j]!);
      // Only a → b is routed: no job of b ever runs in a.
      if (workload.jobs[j]!.pool === 'b') expect(ran).toBe('b');
      else if (ran === 'b') aOnB++;
    }
    expect(on.overflowed).toBe(aOnB);
    expect(aOnB).toBeGreaterThan(0);
    expect(p95ByPool(on, 'a')).toBeLessThan(p95ByPool(off, 'a'));
  }, 300_000);
});

// Experiment-only additions to the affinity policy, registered by the simulator's experiments through
// `schedule(input, extensions)` (production runs neither; measured without gain, docs/simulator.md "Experiments").
import { defineScorer, type SchedulerExtensions } from '../functions/core/scheduler/index.js';

/**
 * evict: −evict × (missing bytes beyond the machine's free cache space) / its download speed: prefer machines where
 * the download evicts nothing. A penalty: bound 0. Default weight 0 (set `evict` in the weights to use it).
 */
export const evictScorer = defineScorer({
  name: 'evict',
  weight: 'evict',
  defaultWeight: 0,
  score: (ctx, m, fit) => {
    const w = ctx.w.evict!;
    if (!(w > 0) || !(fit.missingBytes > 0)) return 0;
    const machine = ctx.state.ms[m]!;
    const room = Math.max(0, machine.budgetBytes - machine.usedBytes - ctx.state.incoming[m]!);
    return -w * (Math.max(0, fit.missingBytes - room) / fit.speed);
  },
  upperBound: () => 0,
});

/** Eviction-aware placement: the `evict` scorer (give it a weight > 0). */
export const EVICT: SchedulerExtensions = Object.freeze({ scorers: [evictScorer] });

/**
 * Hit-first matching: in each batch of routed jobs, those that can start on their picked machine without any download
 * are placed first, then the others in routing order. The same jobs are routed either way.
 */
export const HIT_FIRST: SchedulerExtensions = Object.freeze({
  firstRound: (missing: { count: number }) => missing.count === 0,
});

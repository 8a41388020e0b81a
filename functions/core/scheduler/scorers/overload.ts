// overload: −overload if the machine is over its bounded-load cap (`loadBound`, `loadBoundMinSlots`; see
// candidates.ts `withinBound`). A penalty: bound 0.
import { defineScorer } from './scorer.js';

export const overload = defineScorer({
  name: 'overload',
  weight: 'overload',
  defaultWeight: 100,
  score: (ctx, m) => (ctx.index.withinBound(m) ? 0 : -ctx.w.overload),
  upperBound: () => 0,
});

// avoid: −avoid if an earlier attempt of the job was lost on this machine. A penalty: bound 0.
import { defineScorer } from './scorer.js';

export const avoid = defineScorer({
  name: 'avoid',
  weight: 'avoid',
  defaultWeight: 6,
  score: (ctx, m) => (ctx.view.avoid.includes(m) ? -ctx.w.avoid : 0),
  upperBound: () => 0,
});

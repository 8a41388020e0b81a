// egress: −egress × GiB the machine would download for the job (a price per GiB of egress, in points = seconds of
// expected start). The operator's explicit latency/egress trade: 0 (default) = bytes only cost their download time.
import { defineScorer, type Fit, type ScoreContext } from './scorer.js';

const GIB = 1024 ** 3;
const price = (ctx: ScoreContext, fit: Fit): number => -ctx.w.egress * (fit.missingBytes / GIB);

export const egress = defineScorer({
  name: 'egress',
  weight: 'egress',
  defaultWeight: 0,
  score: (ctx, _m, fit) => price(ctx, fit),
  upperBound: (ctx, _m, best) => price(ctx, best),
});

// affinity: ADR-010's points for the job's LoRAs on the machine (cached, or arriving from an earlier assignment of
// this pass, so a burst of jobs for one cold LoRA follows the first one), × the `affinity` multiplier.
import { defineScorer, type Fit, type ScoreContext } from './scorer.js';

const points = (ctx: ScoreContext, fit: Fit): number =>
  ctx.w.affinity * (ctx.w.userHit * fit.userHits + ctx.w.sharedHit * fit.sharedHits);

export const affinity = defineScorer({
  name: 'affinity',
  weight: 'affinity',
  defaultWeight: 1,
  score: (ctx, _m, fit) => points(ctx, fit),
  upperBound: (ctx, _m, best) => points(ctx, best),
});

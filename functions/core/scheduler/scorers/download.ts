// download: −download × expected seconds of download (missing bytes / the machine's download speed).
import { defineScorer, type Fit, type ScoreContext } from './scorer.js';

const seconds = (ctx: ScoreContext, fit: Fit): number => -ctx.w.download * (fit.missingBytes / fit.speed);

export const download = defineScorer({
  name: 'download',
  weight: 'download',
  defaultWeight: 1,
  score: (ctx, _m, fit) => seconds(ctx, fit),
  upperBound: (ctx, _m, best) => seconds(ctx, best),
});

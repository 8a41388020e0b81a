// hrw: +hrw × the share of the job's LoRA bytes whose rendezvous home this machine is (cold LoRAs only; the homes
// are chosen by the candidate index, candidates.ts `collectHomes`). A machine not yet scored is no home: bound 0.
import { defineScorer } from './scorer.js';

export const hrw = defineScorer({
  name: 'hrw',
  weight: 'hrw',
  defaultWeight: 4,
  score: (ctx, _m, fit) => ctx.w.hrw * fit.homeShare,
  upperBound: () => 0,
});

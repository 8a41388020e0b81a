// load: −load × expected queue wait (busySlots/slots × expectedJobSeconds). Its own bound: the walk visits machines
// from the least loaded up, so this bound only falls along it.
import { defineScorer, type ScoreContext } from './scorer.js';

const wait = (ctx: ScoreContext, m: number): number => {
  const s = ctx.state;
  return -ctx.w.load * (s.busy[m]! / s.slots[m]!) * s.expectedJobSeconds;
};

export const load = defineScorer({
  name: 'load',
  weight: 'load',
  defaultWeight: 0.2,
  score: (ctx, m) => wait(ctx, m),
  upperBound: (ctx, m) => wait(ctx, m),
});

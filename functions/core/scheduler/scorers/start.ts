// start: earliest expected start. −start × the seconds the job would wait on the machine for a slot beyond its own
// download there: max(0, slot wait − download time), the slot wait from slot-wait.ts (busy jobs' residual run times,
// jobs queued ahead). With `download` at 1 point per second, download + start = −(expected start time) =
// −max(slot wait, download) at start = 1: a queue position whose download hides the wait costs nothing extra. 0 on a
// machine with a free slot, so without queue positions (`MachineState.queueDepth`) it never changes a pick. A penalty:
// bound 0.
import { defineScorer } from './scorer.js';

export const start = defineScorer({
  name: 'start',
  weight: 'start',
  // 2: measured on the download-heavy workloads with queue positions (docs/simulator.md): lower p95 and p99 than 1
  // (which saves bytes) or 0 (a cached LoRA then outweighs a long wait), and a no-op on fleets without queue positions.
  defaultWeight: 2,
  score: (ctx, m, fit) => {
    if (ctx.w.start === 0) return 0;
    const wait = ctx.state.slotWait.seconds(m, 0);
    if (wait === 0) return 0;
    return -ctx.w.start * Math.max(0, wait - fit.missingBytes / fit.speed);
  },
  upperBound: () => 0,
});

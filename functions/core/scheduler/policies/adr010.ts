// adr010: ADR-010's greedy score, +userHit per required user LoRA cached, +sharedHit per shared one; a machine with
// nothing cached still gets the job (score 0). Like the origin, it only sees what the machines report as cached.
import type { CandidateIndex } from '../candidates.js';
import { TopScores } from '../runners-up.js';
import { USER, type Choice, type JobView, type PassState, type PoolState } from '../state.js';

export class Adr010Policy {
  private readonly top: TopScores | null;

  constructor(
    private readonly s: PassState,
    private readonly index: CandidateIndex,
  ) {
    const k = Math.max(0, Math.floor(s.input.runnersUp ?? 0));
    this.top = k > 0 ? new TopScores(k) : null;
  }

  choose(v: JobView, pool: PoolState): Choice {
    const { index } = this;
    const w = this.s.w;
    const stamp = index.begin();
    index.collectHolders(v, pool, stamp, false);
    let best = -1;
    let bestScore = 0;
    const top = this.top;
    top?.reset();
    for (let c = 0; c < index.candCount; c++) {
      const m = index.cands[c]!;
      let score = 0;
      for (let i = 0; i < v.loras.length; i++) {
        if (index.holds(v, m, i)) score += v.kinds[i] === USER ? w.userHit : w.sharedHit;
      }
      top?.offer(m, score);
      if (score > bestScore || (score === bestScore && score > 0 && m < best)) {
        best = m;
        bestScore = score;
      }
    }
    // Routing never blocks on the cache: with no scoring machine, the first machine that passes the filters.
    if (best < 0) best = index.firstFree(pool);
    const { known, held } = index.heldOn(v, best);
    if (!top) return { machine: best, score: bestScore, breakdown: { affinity: bestScore }, known, held };
    // Runners-up: the other machines holding some of the job's LoRAs (the rest all score 0).
    const runnersUp = top.others(best).map((m) => {
      let score = 0;
      for (let i = 0; i < v.loras.length; i++) {
        if (index.holds(v, m, i)) score += v.kinds[i] === USER ? w.userHit : w.sharedHit;
      }
      return { machine: m, score, breakdown: { affinity: score } };
    });
    return { machine: best, score: bestScore, breakdown: { affinity: bestScore }, runnersUp, known, held };
  }
}

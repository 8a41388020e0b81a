// adr010: ADR-010's greedy score, +userHit per required user LoRA cached, +sharedHit per shared one; a machine with
// nothing cached still gets the job (score 0). Like the origin, it only sees what the machines report as cached.
import type { CandidateIndex } from '../candidates.js';
import { USER, type Choice, type JobView, type PassState, type PoolState } from '../state.js';

export class Adr010Policy {
  constructor(
    private readonly s: PassState,
    private readonly index: CandidateIndex,
  ) {}

  choose(v: JobView, pool: PoolState): Choice {
    const { index } = this;
    const w = this.s.w;
    const stamp = index.begin();
    index.collectHolders(v, pool, stamp, false);
    let best = -1;
    let bestScore = 0;
    for (const m of index.cands) {
      let score = 0;
      for (let i = 0; i < v.loras.length; i++) {
        if (index.holds(v, m, i)) score += v.kinds[i] === USER ? w.userHit : w.sharedHit;
      }
      if (score > bestScore || (score === bestScore && score > 0 && m < best)) {
        best = m;
        bestScore = score;
      }
    }
    // Routing never blocks on the cache: with no scoring machine, the first machine that passes the filters.
    if (best < 0) best = index.firstFree(pool);
    return { machine: best, score: bestScore, breakdown: { affinity: bestScore } };
  }
}

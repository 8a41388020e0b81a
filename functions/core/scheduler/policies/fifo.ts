// fifo: the first machine in input order that passes the filters (the origin system's behaviour).
import type { CandidateIndex } from '../candidates.js';
import type { Choice, PoolState } from '../state.js';

const FIFO_BREAKDOWN = Object.freeze({ fifo: 1 });

export class FifoPolicy {
  constructor(private readonly index: CandidateIndex) {}

  choose(pool: PoolState): Choice {
    return { machine: this.index.firstFree(pool), score: 1, breakdown: { ...FIFO_BREAKDOWN } };
  }
}

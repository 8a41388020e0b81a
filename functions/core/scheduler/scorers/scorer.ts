// What a scorer of the affinity policy is. A scorer is one file under scorers/ and one line in registry.ts; its weight
// is accepted in `SchedulerInput.weights` and SCHEDULER_WEIGHTS under `weight`, with `defaultWeight` (weights.ts
// derives both from the registry).
import type { CandidateIndex } from '../candidates.js';
import type { JobView, PassState } from '../state.js';

/**
 * What the pass knows about the job on one machine, computed once per (job, machine) and shared by all scorers.
 * For an upper bound (a machine not scored yet) it is the most favourable fit such a machine can have.
 */
export interface Fit {
  /** Required user / shared LoRAs the machine caches or is receiving. */
  userHits: number;
  sharedHits: number;
  /** Bytes of the job's LoRAs neither cached nor arriving there. */
  missingBytes: number;
  /** Share of the job's LoRA bytes whose HRW home this machine is (0 in a bound). */
  homeShare: number;
  /** The machine's download speed (in a bound: the best speed in the pool). */
  speed: number;
}

/** What a scorer may read: the resolved weights (by name), the pass state, the candidate index, the job. */
export interface ScoreContext {
  readonly w: Readonly<Record<string, number>>;
  readonly state: PassState;
  readonly index: CandidateIndex;
  view: JobView;
}

export interface Scorer<W extends string = string> {
  /** Key in `Assignment.breakdown`. */
  readonly name: string;
  /** Key in `SchedulerInput.weights` / SCHEDULER_WEIGHTS. */
  readonly weight: W;
  readonly defaultWeight: number;
  /** Weighted points of machine `m` for the job (penalties negative). */
  score(ctx: ScoreContext, m: number, fit: Fit): number;
  /**
   * The most this scorer can give machine `m` when `m` is not a candidate (holds none of the enumerated LoRAs, is no
   * LoRA's home); `best` is the most favourable fit. It must be ≥ `score` for any such machine, must not grow as the
   * walk moves to more loaded machines, and should be written like `score`, so a machine that reaches the bound scores
   * exactly the bound. The affinity policy prunes its walk with the sum over the registered scorers.
   */
  upperBound(ctx: ScoreContext, m: number, best: Fit): number;
}

/** Types a scorer with its literal weight key (so `Weights` lists it). */
export function defineScorer<const W extends string>(scorer: Scorer<W>): Scorer<W> {
  return scorer;
}

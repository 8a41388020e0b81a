// affinity: the sum of the registered scorers (registry.ts, plus any an experiment adds), highest total wins, ties by
// machine input order.
//
// Candidates, exact but cheap: the policy does not score every machine for every job. It scores the machines that hold
// or are receiving one of the job's less common LoRAs, the HRW homes of its cold LoRAs (candidates.ts), and then walks
// the machines with a free slot from the least loaded up, stopping as soon as the sum of the scorers' upper bounds for
// a machine not yet scored falls below the best score. So the pick is the one an exhaustive pass makes (a test compares
// both on random inputs), at the cost of a handful of scores per job.
import type { CandidateIndex } from '../candidates.js';
import { TopScores } from '../runners-up.js';
import type { Fit, ScoreContext, Scorer } from '../scorers/scorer.js';
import { USER, type Choice, type JobView, type PassState, type PoolState } from '../state.js';

const clean = (x: number): number => (x === 0 ? 0 : x); // no -0 in breakdowns

export class AffinityPolicy {
  private readonly ctx: ScoreContext;
  private readonly fit: Fit = { userHits: 0, sharedHits: 0, missingBytes: 0, homeShare: 0, speed: 0 };
  private readonly best: Fit = { userHits: 0, sharedHits: 0, missingBytes: 0, homeShare: 0, speed: 0 };
  /** The last total `rate` or bound computed (see `sumScores`). */
  private readonly sum = new Float64Array(1);
  /** Runners-up (`SchedulerInput.runnersUp`); null when none are asked for. */
  private readonly top: TopScores | null;

  constructor(
    private readonly s: PassState,
    private readonly index: CandidateIndex,
    private readonly scorers: readonly Scorer[],
    /** Test entry point only (testkit): score every machine of the pool instead of pruning. */
    private readonly exhaustive: boolean,
  ) {
    this.ctx = { w: s.w, state: s, index, view: null as unknown as JobView };
    const k = Math.max(0, Math.floor(s.input.runnersUp ?? 0));
    this.top = k > 0 ? new TopScores(k) : null;
  }

  choose(v: JobView, pool: PoolState): Choice {
    const { index, s } = this;
    const w = s.w;
    const stamp = index.begin();
    index.boundFactor = (w.loadBound * (pool.busy + 1)) / pool.slots;
    index.collectHolders(v, pool, stamp, true);
    index.collectHomes(v, pool, stamp);
    this.ctx.view = v;
    // The walk below is in load order; without a load term it has no order to prune with: score the whole pool.
    const walk = !this.exhaustive && w.load * s.expectedJobSeconds > 0;
    if (!walk) for (const m of pool.members) index.addCandidate(m, stamp);

    let best = -1;
    let bestScore = -Infinity;
    const top = this.top;
    top?.reset();
    for (let c = 0; c < index.candCount; c++) {
      const m = index.cands[c]!;
      this.rate(v, m);
      const score = this.sum[0]!;
      top?.offer(m, score);
      if (score > bestScore || (score === bestScore && m < best)) {
        best = m;
        bestScore = score;
      }
    }

    if (walk) {
      // Any machine that is not a candidate yet holds none of the enumerated LoRAs and is no LoRA's home. Its most
      // favourable fit: every widespread LoRA a hit, the enumerated LoRAs' bytes at the pool's best download speed.
      // Walk the machines with a free slot from the least loaded up and stop once the summed bound cannot beat (or tie
      // with a lower index) the best so far.
      const bf = this.best;
      bf.userHits = 0;
      bf.sharedHits = 0;
      bf.missingBytes = 0;
      bf.homeShare = 0;
      bf.speed = pool.maxSpeed;
      for (let i = 0; i < v.loras.length; i++) {
        if (index.direct[i]) {
          if (v.kinds[i] === USER) bf.userHits++;
          else bf.sharedHits++;
        } else if (v.loras[i]!.sizeBytes > 0) {
          bf.missingBytes += v.loras[i]!.sizeBytes;
        }
      }
      const { scorers, ctx } = this;
      const byLoad = pool.byLoad!;
      byLoad.startWalk();
      for (let m = byLoad.nextInWalk(); m >= 0; m = byLoad.nextInWalk()) {
        sumBounds(scorers, ctx, m, bf, this.sum);
        const bound = this.sum[0]!;
        // Heap order is (load, index): past this point nothing can beat or tie with a lower index (nor, with
        // runners-up asked for, enter them).
        if (top ? top.cannotEnter(bound, m) : bound < bestScore || (bound === bestScore && m > best)) break;
        if (index.mark[m] !== stamp) {
          index.addCandidate(m, stamp);
          this.rate(v, m);
          const score = this.sum[0]!;
          top?.offer(m, score);
          if (score > bestScore || (score === bestScore && m < best)) {
            best = m;
            bestScore = score;
          }
        }
      }
    }

    const breakdown: Record<string, number> = {};
    const score = this.score(v, best, breakdown);
    const { known, held } = index.heldOn(v, best);
    if (!top) return { machine: best, score, breakdown, known, held };
    const runnersUp = top.others(best).map((m) => {
      const parts: Record<string, number> = {};
      return { machine: m, score: this.score(v, m, parts), breakdown: parts };
    });
    return { machine: best, score, breakdown, runnersUp, known, held };
  }

  /** The job's fit on machine `m` (after `choose` set up the candidate index for this job). */
  private fitOn(v: JobView, m: number): Fit {
    const { index } = this;
    let userHits = 0;
    let sharedHits = 0;
    let missingBytes = 0;
    let homeShare = 0;
    for (let i = 0; i < v.loras.length; i++) {
      if (index.holds(v, m, i)) {
        if (v.kinds[i] === USER) userHits++;
        else sharedHits++;
        continue;
      }
      const size = v.loras[i]!.sizeBytes;
      if (size > 0) missingBytes += size;
      if (index.targets[i] === m) homeShare += v.shares[i]!;
    }
    const fit = this.fit;
    fit.userHits = userHits;
    fit.sharedHits = sharedHits;
    fit.missingBytes = missingBytes;
    fit.homeShare = homeShare;
    fit.speed = this.s.speed[m]!;
    return fit;
  }

  /** Machine `m`'s total, with each scorer's points in `out`. */
  private score(v: JobView, m: number, out: Record<string, number>): number {
    const fit = this.fitOn(v, m);
    const { scorers, ctx } = this;
    let total = 0;
    for (const scorer of scorers) {
      const points = scorer.score(ctx, m, fit);
      out[scorer.name] = clean(points);
      total += points;
    }
    return clean(total);
  }

  /** Machine `m`'s total (as `score` computes it) into `this.sum[0]`. */
  private rate(v: JobView, m: number): void {
    sumScores(this.scorers, this.ctx, m, this.fitOn(v, m), this.sum);
    this.sum[0] = clean(this.sum[0]!);
  }
}

/**
 * Σ score over the scorers, in their order (so the same floating-point sum as a loop). The first eight are called from
 * a call site each: a site that only ever sees one scorer lets the engine inline it, where one site shared by all
 * scorers calls each generically and boxes every result (measured: most of the pass's garbage at 100 000 × 5 000).
 * The sum goes into `into[0]`, not a return value, which would be boxed too when this is not inlined.
 */
function sumScores(scorers: readonly Scorer[], ctx: ScoreContext, m: number, fit: Fit, into: Float64Array): void {
  const n = scorers.length;
  let total = 0;
  if (n > 0) total += scorers[0]!.score(ctx, m, fit);
  if (n > 1) total += scorers[1]!.score(ctx, m, fit);
  if (n > 2) total += scorers[2]!.score(ctx, m, fit);
  if (n > 3) total += scorers[3]!.score(ctx, m, fit);
  if (n > 4) total += scorers[4]!.score(ctx, m, fit);
  if (n > 5) total += scorers[5]!.score(ctx, m, fit);
  if (n > 6) total += scorers[6]!.score(ctx, m, fit);
  if (n > 7) total += scorers[7]!.score(ctx, m, fit);
  for (let k = 8; k < n; k++) total += scorers[k]!.score(ctx, m, fit);
  into[0] = total;
}

/** Σ upperBound over the scorers, like `sumScores`. */
function sumBounds(scorers: readonly Scorer[], ctx: ScoreContext, m: number, best: Fit, into: Float64Array): void {
  const n = scorers.length;
  let total = 0;
  if (n > 0) total += scorers[0]!.upperBound(ctx, m, best);
  if (n > 1) total += scorers[1]!.upperBound(ctx, m, best);
  if (n > 2) total += scorers[2]!.upperBound(ctx, m, best);
  if (n > 3) total += scorers[3]!.upperBound(ctx, m, best);
  if (n > 4) total += scorers[4]!.upperBound(ctx, m, best);
  if (n > 5) total += scorers[5]!.upperBound(ctx, m, best);
  if (n > 6) total += scorers[6]!.upperBound(ctx, m, best);
  if (n > 7) total += scorers[7]!.upperBound(ctx, m, best);
  for (let k = 8; k < n; k++) total += scorers[k]!.upperBound(ctx, m, best);
  into[0] = total;
}

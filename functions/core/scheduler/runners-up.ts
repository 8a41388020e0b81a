// Runners-up for `job --explain`: the best few machines a policy scored besides its pick. A short insertion list, so
// tracking costs a comparison or two per scored machine, and nothing when off (`SchedulerInput.runnersUp` = 0).
export class TopScores {
  private readonly machines: number[] = [];
  private readonly scores: number[] = [];

  /** Keeps `k` runners-up besides the pick. */
  constructor(private readonly k: number) {}

  reset(): void {
    this.machines.length = 0;
    this.scores.length = 0;
  }

  /** Keeps the k+1 best offers: score descending, then machine index ascending (the policies' tie-break). */
  offer(m: number, score: number): void {
    const cap = this.k + 1;
    let i = this.machines.length;
    while (i > 0 && (this.scores[i - 1]! < score || (this.scores[i - 1] === score && this.machines[i - 1]! > m))) i--;
    if (i >= cap || this.machines.includes(m)) return;
    this.machines.splice(i, 0, m);
    this.scores.splice(i, 0, score);
    if (this.machines.length > cap) {
      this.machines.pop();
      this.scores.pop();
    }
  }

  /**
   * Whether a machine whose score is at most `bound` can no longer enter the kept list (full, and `bound` below its
   * last entry, or tied with it at a higher index). The affinity walk prunes with this instead of the best score
   * alone, so the runners-up among machines with a free slot are exact, as the pick is.
   */
  cannotEnter(bound: number, m: number): boolean {
    const n = this.machines.length;
    if (n < this.k + 1) return false;
    const last = this.scores[n - 1]!;
    return bound < last || (bound === last && m > this.machines[n - 1]!);
  }

  /** The kept machines other than `picked`, best first, at most k. */
  others(picked: number): number[] {
    return this.machines.filter((m) => m !== picked).slice(0, this.k);
  }
}

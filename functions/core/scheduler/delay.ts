// The affinity policy's delay rule (`delay` > 0; size-aware delay scheduling). When the picked machine would download
// some of the job's LoRAs, the job stays pending (reason `delayed`) if a machine without a free slot that holds more of
// them is expected to start it (slot free, from `busySinceMs`, + its own download there) within `delay` × the download
// time on the picked machine, and the job's age + that wait ≤ `delayCapSeconds`. The slot wait is slot-wait.ts's.
import type { CandidateIndex } from './candidates.js';
import type { JobView, PassState } from './state.js';

export class DelayRule {
  /** Jobs of this pass held back for each machine; marks for the holder scan. */
  private readonly waiters: Int32Array;
  private readonly dmark: Int32Array;
  private dstamp = 0;
  /** After `shouldDelay` returned true: the busy machine the job waits for. */
  holder = -1;
  /** The holder scan's best so far (`consider`). */
  private best = -1;
  private bestWait = Infinity;
  /** The current job's longest acceptable wait (`shouldDelay`). */
  private limit = 0;

  constructor(
    private readonly s: PassState,
    private readonly index: CandidateIndex,
  ) {
    this.waiters = new Int32Array(s.ms.length);
    this.dmark = new Int32Array(s.ms.length);
  }

  /** The job's LoRAs machine `m` neither caches nor is receiving (after choosing for this job): count, bytes. */
  missingOn(v: JobView, m: number): { count: number; bytes: number } {
    let count = 0;
    let bytes = 0;
    for (let i = 0; i < v.loras.length; i++) {
      if (this.index.holds(v, m, i)) continue;
      count++;
      if (v.loras[i]!.sizeBytes > 0) bytes += v.loras[i]!.sizeBytes;
    }
    return { count, bytes };
  }

  /**
   * Whether the job, picked for machine `b`, stays pending. Each held-back job takes one expected slot of its machine,
   * so later jobs of the pass wait for the next one.
   */
  shouldDelay(v: JobView, b: number): boolean {
    const miss = this.missingOn(v, b);
    if (miss.count === 0) return false;
    const { w, speed } = this.s;
    const age = Math.max(0, (this.s.input.nowMs - v.job.createdAtMs) / 1000);
    const limit = Math.min(w.delay * (miss.bytes / speed[b]!), w.delayCapSeconds - age);
    if (!(limit > 0)) return false;
    this.limit = limit;
    const stamp = ++this.dstamp;
    this.best = -1;
    this.bestWait = Infinity;
    const holders = this.s.holders;
    const reported = holders.reported;
    const busy = holders.busyHolders();
    for (let i = 0; i < v.loras.length; i++) {
      // The machines that cache the LoRA (free or busy at pass start) and those it is sent to in this pass.
      const id = v.ids[i]!;
      if (id < reported.built) this.consider(v, miss, stamp, reported.list, reported.start[id]!, reported.end[id]!);
      if (id < busy.built) this.consider(v, miss, stamp, busy.list, busy.start[id]!, busy.end[id]!);
      const arriving = holders.arrivals[id];
      if (arriving) this.consider(v, miss, stamp, arriving, 0, arriving.length);
    }
    const { best, bestWait } = this;
    if (best < 0 || bestWait > limit) return false;
    this.waiters[best]!++;
    this.holder = best;
    return true;
  }

  /** Keeps in `best`/`bestWait` the soonest start among `list[from .. to)` for a job missing `miss` on its pick. */
  private consider(
    v: JobView,
    miss: { count: number; bytes: number },
    stamp: number,
    list: ArrayLike<number>,
    from: number,
    to: number,
  ): void {
    const { free, speed } = this.s;
    for (let k = from; k < to; k++) {
      const h = list[k]!;
      if (this.dmark[h] === stamp || free[h]! > 0) continue; // free machines were scored already
      this.dmark[h] = stamp;
      // Its wait is at least the slot wait: past the limit or the best so far, it cannot be the pick (exact skip).
      const slotWait = this.s.slotWait.seconds(h, this.waiters[h]!);
      if (slotWait > this.limit || slotWait > this.bestWait) continue;
      let bytes = 0;
      let count = 0;
      for (let j = 0; j < v.loras.length; j++) {
        if (this.s.holdsAny(v, h, j)) continue;
        count++;
        if (v.loras[j]!.sizeBytes > 0) bytes += v.loras[j]!.sizeBytes;
      }
      if (count >= miss.count && bytes >= miss.bytes) continue;
      const wait = slotWait + bytes / speed[h]!;
      if (wait < this.bestWait || (wait === this.bestWait && h < this.best)) {
        this.bestWait = wait;
        this.best = h;
      }
    }
  }
}

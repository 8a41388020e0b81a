// The candidate index: which machines a policy scores for a job. The machines holding its LoRAs (holders.ts), the
// rendezvous-hash (HRW) homes of the job's cold LoRAs, and a per-pool heap of the machines with a free slot by load
// (the walk in policies/affinity.ts). Per job it marks candidates and records, per candidate, a bit mask
// of the job's LoRAs it holds or is receiving, so scoring a candidate does no set look-ups.
import { hrwTopK, loraSeed, machineSeed } from './hash.js';
import { IndexedHeap } from './heap.js';
import { kindOf, type JobView, type PassState, type PoolState } from './state.js';
import type { LoraRef, PendingJob } from './types.js';

/** HRW ranks kept per (pool, LoRA): how far a cold LoRA's home may spill before the term gives up. */
const HRW_DEPTH = 8;
/**
 * affinity: a LoRA cached on more than this share of the pool's machines (and more than WIDESPREAD_MIN of them) is not
 * enumerated per job (see collectHolders): the walk over the least-loaded machines meets one of its holders quickly.
 */
const WIDESPREAD_SHARE = 0.3;
const WIDESPREAD_MIN = 16;
/** Bit of a LoRA's position in a job in the per-machine hit masks; LoRAs beyond it are checked directly. */
const MASK_BITS = 30;

export class CandidateIndex {
  // Per-job scratch: candidate marks and, per candidate, a bit mask of the job's LoRAs it holds or is receiving.
  readonly mark: Int32Array;
  private readonly mask: Int32Array;
  stamp = 0;
  // Per-job lists are written by index and never shrunk, so routing a job allocates nothing.
  /** The current job's candidates: `cands[0 .. candCount)`. */
  readonly cands: Int32Array;
  candCount = 0;
  /** Per LoRA of the current job: its HRW home with a free slot within the bound, or -1 (warm, or no such home). */
  readonly targets: number[] = [];
  /** Per LoRA of the current job: held by a machine with a free slot within its bound. */
  readonly warm: boolean[] = [];
  /** Per LoRA of the current job: hits checked directly instead of through `mask`. */
  readonly direct: boolean[] = [];
  /** Per job: loadBound × pool utilisation after the job, the factor of the bounded-load cap. */
  boundFactor = 0;

  constructor(private readonly s: PassState) {
    const n = s.ms.length;
    this.mark = new Int32Array(n);
    this.mask = new Int32Array(n);
    this.cands = new Int32Array(n);
  }

  /**
   * Indexes (holders.ts) the machines of the pool with a free slot that cache the LoRAs these jobs need. Again with
   * more jobs, it re-indexes against the same pass start.
   */
  indexHolders(jobs: readonly PendingJob[]): void {
    const { pools, holders } = this.s;
    for (let j = 0; j < jobs.length; j++) {
      const job = jobs[j]!;
      const pool = pools.get(job.pool)!;
      for (let i = 0; i < job.loras.length; i++) holders.idOf(pool, kindOf(job.loras[i]!), job.loras[i]!.key);
    }
    holders.index();
  }

  /** affinity: the per-pool load heaps, HRW seeds, best speeds and widespread thresholds. */
  prepareLoadWalk(): void {
    const { busy, slots, speed, free, ms, seeds } = this.s;
    const n = ms.length;
    // a before b when a is less loaded (cross-multiplied to stay in integers), then by input order.
    const byLoad = (a: number, b: number): boolean => {
      const d = busy[a]! * slots[b]! - busy[b]! * slots[a]!;
      return d < 0 || (d === 0 && a < b);
    };
    for (const pool of this.s.pools.values()) {
      pool.byLoad = new IndexedHeap(n, byLoad);
      pool.widespread = Math.max(WIDESPREAD_MIN, Math.floor(pool.members.length * WIDESPREAD_SHARE));
      for (const i of pool.members) {
        seeds[i] = machineSeed(ms[i]!.id);
        if (speed[i]! > pool.maxSpeed) pool.maxSpeed = speed[i]!;
        if (free[i]! > 0) pool.byLoad.push(i);
      }
    }
  }

  /** Starts a job: clears the candidate set and returns the job's stamp. */
  begin(): number {
    this.candCount = 0;
    return ++this.stamp;
  }

  /** First machine of the pool, in input order, with a free slot. */
  firstFree(pool: PoolState): number {
    const free = this.s.free;
    while (pool.cursor < pool.members.length && free[pool.members[pool.cursor]!] === 0) pool.cursor++;
    return pool.members[pool.cursor]!; // the caller routes only while pool.free > 0
  }

  /**
   * Makes candidates of the machines with a free slot that hold (or, for affinity, are receiving) one of the job's
   * LoRAs, and records in `mask` which of the job's LoRAs each one holds. With `affinity`, a LoRA held by more than
   * `pool.widespread` machines is not enumerated: its hits are checked per candidate (`direct`), and the bounded walk over
   * the least-loaded machines finds the best of its holders. Also records, for affinity, whether each LoRA is warm.
   */
  collectHolders(v: JobView, pool: PoolState, stamp: number, affinity: boolean): void {
    const { mark, mask, cands, direct, warm } = this;
    const { free, holders } = this.s;
    const { list, start, end, built } = holders.reported;
    const arrivals = holders.arrivals;
    for (let i = 0; i < v.loras.length; i++) {
      const id = v.ids[i]!;
      const from = id < built ? start[id]! : 0;
      const to = id < built ? end[id]! : 0;
      const arriving = arrivals[id];
      let isWarm = false;
      if (i >= MASK_BITS || (affinity && holders.count(id) > pool.widespread)) {
        direct[i] = true;
        if (affinity) {
          for (let k = from; k < to && !isWarm; k++) {
            const m = list[k]!;
            if (free[m]! > 0 && this.withinBound(m)) isWarm = true;
          }
          if (arriving && !isWarm) {
            for (const m of arriving) {
              if (free[m]! > 0 && this.withinBound(m)) {
                isWarm = true;
                break;
              }
            }
          }
        } else {
          for (let k = from; k < to; k++) this.addCandidate(list[k]!, stamp);
          if (arriving) for (const m of arriving) this.addCandidate(m, stamp);
        }
      } else {
        direct[i] = false;
        const bit = 1 << i;
        for (let k = from, n = to + (arriving ? arriving.length : 0); k < n; k++) {
          const m = k < to ? list[k]! : arriving![k - to]!;
          if (free[m] === 0) continue;
          if (mark[m] !== stamp) {
            mark[m] = stamp;
            mask[m] = 0;
            cands[this.candCount++] = m;
          }
          mask[m]! |= bit;
          if (affinity && !isWarm) isWarm = this.withinBound(m);
        }
      }
      warm[i] = isWarm;
    }
  }

  addCandidate(m: number, stamp: number): void {
    if (this.s.free[m]! > 0 && this.mark[m] !== stamp) {
      this.mark[m] = stamp;
      this.mask[m] = 0;
      this.cands[this.candCount++] = m;
    }
  }

  /** Whether LoRA `i` of the job is on machine `m` (cached, or arriving when the policy tracks arrivals). */
  holds(v: JobView, m: number, i: number): boolean {
    if (!this.direct[i]) return this.mark[m] === this.stamp && (this.mask[m]! & (1 << i)) !== 0;
    const at = this.s.holders.mapOf(v.ids[i]!);
    if (at >= 0) return this.s.holders.holdsMap()[at + m] === 1;
    const kind = v.kinds[i]!;
    const key = v.loras[i]!.key;
    return this.s.cachedOn(m, kind, key) || (this.s.policy === 'affinity' && this.s.arriving[kind][m]?.has(key) === true);
  }

  /**
   * For `assign` (`Choice.known`, `Choice.held`): which of the job's first MASK_BITS LoRAs the index covers on machine
   * `m` (its pool's holders were indexed), and of those, which it holds (as `holds` says). Call after the policy chose.
   */
  heldOn(v: JobView, m: number): { known: number; held: number } {
    const built = this.s.holders.reported.built;
    let known = 0;
    let held = 0;
    for (let i = 0; i < v.loras.length && i < MASK_BITS; i++) {
      if (v.ids[i]! >= built) continue;
      known |= 1 << i;
      if (this.holds(v, m, i)) held |= 1 << i;
    }
    return { known, held };
  }

  /** Bounded load: busy slots after the job ≤ max(loadBoundMinSlots, ceil(boundFactor × slots)). */
  withinBound(m: number): boolean {
    const after = this.s.busy[m]! + 1;
    return after <= this.s.w.loadBoundMinSlots || after <= Math.ceil(this.boundFactor * this.s.slots[m]! - 1e-9);
  }

  /** The first HRW ranks of a LoRA over the pool's members (cached per pass). */
  homesOf(pool: PoolState, id: number, l: LoraRef): number[] {
    const cache = this.s.holders.homes;
    let homes = cache[id];
    if (!homes) {
      homes = hrwTopK(loraSeed(l.kind, l.key), pool.members, this.s.seeds, HRW_DEPTH);
      cache[id] = homes;
    }
    return homes;
  }

  /**
   * affinity: per LoRA of the job, its target home. A LoRA that a machine with a free slot within its bound holds (or
   * is receiving) is warm: affinity handles it. A cold one gets a home: its first HRW rank with a free slot within the
   * load bound, which becomes a candidate.
   */
  collectHomes(v: JobView, pool: PoolState, stamp: number): void {
    const { targets, warm } = this;
    const free = this.s.free;
    for (let i = 0; i < v.loras.length; i++) {
      if (warm[i]) {
        targets[i] = -1;
        continue;
      }
      const homes = this.homesOf(pool, v.ids[i]!, v.loras[i]!);
      let target = -1;
      for (const m of homes) {
        if (free[m]! > 0 && this.withinBound(m)) {
          target = m;
          break;
        }
      }
      targets[i] = target;
      // Only the target scores the hrw bonus; the other ranks score like any machine, and the walk reaches them if
      // they can win (the bound of a machine that is no target is exact for them).
      if (target >= 0) this.addCandidate(target, stamp);
    }
  }
}

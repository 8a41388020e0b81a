// The scheduler pass: filters → weighted scorers → picker, under a named policy. Pure: no I/O, no clock (time is
// `input.nowMs`), no randomness; the same input always gives the same output.
//
// Pass outline
//   1. Order jobs: priority (high first), then createdAtMs (old first), then id. Jobs in backoff are set aside.
//   2. Filters, per pool: only live, non-draining machines of the job's pool with a free slot. Capacity is consumed as
//      the pass assigns, so no machine gets more than its free slots. A pool with no free slot left costs O(1) per job.
//   3. Policy:
//      - fifo:     first machine in input order that passes the filters (the origin system's behaviour).
//      - adr010:   ADR-010's greedy score, +userHit (10) per required user LoRA cached, +sharedHit (5) per shared one;
//                  highest wins, ties by input order, and a machine with nothing cached still gets the job (score 0).
//                  Like the origin, it only sees what the machines report as cached.
//      - affinity: the sum of the weighted scorers below, highest wins, ties by input order.
//
// affinity scorers (names = breakdown keys = weight names, see weights.ts for the defaults)
//   affinity  +affinity × (userHit × user LoRAs on the machine + sharedHit × shared LoRAs on the machine). "On the
//             machine" includes LoRAs that an earlier assignment of this pass already sends there ("arriving"), so a
//             burst of jobs for one cold LoRA follows the first one.
//   download  −download × (bytes of the job's LoRAs neither cached nor arriving) / the machine's download speed.
//   load      −load × busySlots/slots × expectedJobSeconds (expected queue wait).
//   hrw       +hrw × (share of the job's LoRA bytes that are cold on this machine and whose rendezvous home it is).
//             A LoRA's home is the first of its HRW ranking over the pool's machines (all live, non-draining ones, so the
//             ranking is stable from pass to pass) that has a free slot and is within its load bound; a full or
//             overloaded home spills to the next rank.
//   avoid     −avoid if an earlier attempt of the job was lost on this machine.
//   overload  −overload if the machine is over its bound: busy slots after the job
//             > max(loadBoundMinSlots, ceil(loadBound × pool utilisation after the job × slots)).
//
// Multi-LoRA jobs: affinity is summed per LoRA (ADR-010), missing bytes are summed (one download time), and the HRW
// term is weighted by LoRA size, so the home of the job's largest cold LoRA dominates.
//
// Candidates: affinity does not score every machine for every job. It scores the machines that hold or are receiving
// one of the job's LoRAs, the first HRW ranks of each of its LoRAs, the least-loaded few (plus one per avoided machine)
// and, in pools with mixed download speeds, the fastest few. Any other machine has no hit, no HRW bonus and at least the
// load of the least-loaded candidates, so in a pool of equal machines (speed, slots) it cannot score higher: the pass
// then picks exactly what an exhaustive pass picks (a test checks this). With mixed speeds or slot counts the fastest
// and least-loaded candidates cover the cases that matter; the pick is then a close approximation.
import { IndexedHeap } from './heap.js';
import { hrwTopK, loraSeed, machineSeed } from './hash.js';
import type {
  Assignment,
  LoraRef,
  MachineState,
  PendingJob,
  ScheduleResult,
  SchedulerInput,
  UnassignedReason,
  Weights,
} from './types.js';
import {
  DEFAULT_DOWNLOAD_BYTES_PER_SECOND,
  DEFAULT_EXPECTED_JOB_SECONDS,
  assertPolicyName,
  resolveWeights,
  type PolicyName,
} from './weights.js';

/** HRW ranks kept per (pool, LoRA): how far a cold LoRA's home may spill before the term gives up. */
const HRW_DEPTH = 8;
/** Least-loaded machines added to every affinity candidate set. */
const LEAST_LOADED = 3;
/** Fastest-downloading machines added to the candidates of jobs with LoRAs, in pools with mixed speeds. */
const FASTEST = 2;

const USER = 0;
const SHARED = 1;
type Kind = typeof USER | typeof SHARED;
const kindOf = (l: LoraRef): Kind => (l.kind === 'user' ? USER : SHARED);

/** Options for tests and experiments; not part of the public API. */
export interface PassOptions {
  /** affinity: score every machine of the pool instead of the candidate set. */
  exhaustive?: boolean;
}

interface PoolState {
  /** Live, non-draining machines of the pool, in input order. */
  members: number[];
  slots: number;
  busy: number;
  free: number;
  /** fifo/adr010: position in `members` before which no machine has a free slot. */
  cursor: number;
  /** LoRA key → machines (with a free slot at pass start) holding it; affinity adds machines it is sent to. */
  holders: [Map<string, number[]>, Map<string, number[]>];
  /** LoRA key → first HRW ranks over `members`. */
  homes: [Map<string, number[]>, Map<string, number[]>];
  /** Machines with a free slot by load (busy/slots), then input order. */
  byLoad: IndexedHeap | null;
  /** Machines with a free slot by download speed (fast first), then input order; null when all speeds are equal. */
  bySpeed: IndexedHeap | null;
}

interface JobView {
  job: PendingJob;
  /** The job's LoRAs without duplicates. */
  loras: LoraRef[];
  kinds: Kind[];
  /** Weight of each LoRA in the HRW term: its share of the job's bytes (equal shares if sizes are unknown). */
  shares: number[];
  avoid: number[];
}

interface Choice {
  machine: number;
  score: number;
  breakdown: Record<string, number>;
}

const FIFO_BREAKDOWN = Object.freeze({ fifo: 1 });

/** Runs one scheduling pass. Throws on an unknown policy or invalid weights (see `policyNames`, `weightNames`). */
export function schedule(input: SchedulerInput): ScheduleResult {
  return runPass(input, {});
}

/** `schedule` with test options. */
export function runPass(input: SchedulerInput, options: PassOptions): ScheduleResult {
  const policy = assertPolicyName(input.policy);
  const weights = resolveWeights(input.weights);
  return new Pass(input, policy, weights, options).run();
}

function compareJobs(a: PendingJob, b: PendingJob): number {
  if (a.priority !== b.priority) return b.priority - a.priority;
  if (a.createdAtMs !== b.createdAtMs) return a.createdAtMs - b.createdAtMs;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

const clean = (x: number): number => (x === 0 ? 0 : x); // no -0 in breakdowns

/**
 * The `k` first jobs in routing order, sorted, and the rest (unsorted). A bounded max-heap: O(n log k) in the worst
 * case and about O(n) when most jobs lose to the k-th best with one comparison.
 */
export function firstInOrder(jobs: readonly PendingJob[], k: number): { first: PendingJob[]; rest: PendingJob[] } {
  if (jobs.length <= k) return { first: [...jobs].sort(compareJobs), rest: [] };
  const heap: PendingJob[] = []; // heap[0] is the last in order among the kept
  const rest: PendingJob[] = [];
  const siftDown = (i: number): void => {
    const n = heap.length;
    const item = heap[i]!;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const c = r < n && compareJobs(heap[r]!, heap[l]!) > 0 ? r : l;
      if (compareJobs(heap[c]!, item) <= 0) break;
      heap[i] = heap[c]!;
      i = c;
    }
    heap[i] = item;
  };
  for (const job of jobs) {
    if (heap.length < k) {
      let i = heap.length;
      heap.push(job);
      while (i > 0) {
        const p = (i - 1) >> 1;
        if (compareJobs(heap[p]!, job) >= 0) break;
        heap[i] = heap[p]!;
        i = p;
      }
      heap[i] = job;
    } else if (k > 0 && compareJobs(job, heap[0]!) < 0) {
      rest.push(heap[0]!);
      heap[0] = job;
      siftDown(0);
    } else {
      rest.push(job);
    }
  }
  return { first: heap.sort(compareJobs), rest };
}

/** Bit of a LoRA's position in a job in the per-machine hit masks; LoRAs beyond it are checked directly. */
const MASK_BITS = 30;

class Pass {
  private readonly ms: readonly MachineState[];
  private readonly slots: Int32Array;
  private readonly busy: Int32Array;
  private readonly free: Int32Array;
  private readonly speed: Float64Array;
  private readonly seeds: Uint32Array;
  private readonly pools = new Map<string, PoolState>();
  private readonly idIndex = new Map<string, number>();
  /** Per machine: LoRA keys an earlier assignment of this pass sends there (by kind). */
  private readonly arriving: [(Set<string> | undefined)[], (Set<string> | undefined)[]];
  private readonly expectedJobSeconds: number;
  // Per-job scratch: candidate marks and, per candidate, a bit mask of the job's LoRAs it holds or is receiving.
  private readonly mark: Int32Array;
  private readonly mask: Int32Array;
  private stamp = 0;
  private readonly cands: number[] = [];
  private readonly targets: number[] = [];
  /** Per job: loadBound × pool utilisation after the job, the factor of the bounded-load cap. */
  private boundFactor = 0;

  constructor(
    private readonly input: SchedulerInput,
    private readonly policy: PolicyName,
    private readonly w: Weights,
    private readonly options: PassOptions,
  ) {
    const ms = input.machines;
    const n = ms.length;
    this.ms = ms;
    this.slots = new Int32Array(n);
    this.busy = new Int32Array(n);
    this.free = new Int32Array(n);
    this.speed = new Float64Array(n);
    this.seeds = new Uint32Array(n);
    this.mark = new Int32Array(n);
    this.mask = new Int32Array(n);
    this.arriving = [new Array(n), new Array(n)];
    this.expectedJobSeconds =
      input.expectedJobSeconds !== undefined && input.expectedJobSeconds >= 0
        ? input.expectedJobSeconds
        : DEFAULT_EXPECTED_JOB_SECONDS;
    const defaultSpeed =
      input.defaultDownloadBytesPerSecond !== undefined && input.defaultDownloadBytesPerSecond > 0
        ? input.defaultDownloadBytesPerSecond
        : DEFAULT_DOWNLOAD_BYTES_PER_SECOND;

    // Filters that do not depend on the job: live, not draining. Pool membership is by machine.pool.
    for (let i = 0; i < n; i++) {
      const m = ms[i]!;
      if (this.idIndex.has(m.id)) continue; // a duplicated machine id keeps its first entry only
      this.idIndex.set(m.id, i);
      if (!m.live || m.draining) continue;
      const slots = Math.max(0, Math.floor(m.slots) || 0);
      const busy = Math.min(slots, Math.max(0, Math.floor(m.busySlots) || 0));
      this.slots[i] = slots;
      this.busy[i] = busy;
      this.free[i] = slots - busy;
      this.speed[i] = m.downloadBytesPerSecond > 0 ? m.downloadBytesPerSecond : defaultSpeed;
      let pool = this.pools.get(m.pool);
      if (!pool) {
        pool = {
          members: [],
          slots: 0,
          busy: 0,
          free: 0,
          cursor: 0,
          holders: [new Map(), new Map()],
          homes: [new Map(), new Map()],
          byLoad: null,
          bySpeed: null,
        };
        this.pools.set(m.pool, pool);
      }
      pool.members.push(i);
      pool.slots += slots;
      pool.busy += busy;
      pool.free += slots - busy;
    }
  }

  run(): ScheduleResult {
    const jobs = this.input.jobs;
    const reasons = new Array<UnassignedReason | undefined>(jobs.length);
    const position = new Map<PendingJob, number>();
    const queues = new Map<PoolState, PendingJob[]>();
    const seen = new Set<string>();
    const now = this.input.nowMs;
    for (let i = 0; i < jobs.length; i++) {
      const job = jobs[i]!;
      if (seen.has(job.id)) continue; // a duplicated job id is routed once (its first entry)
      seen.add(job.id);
      if (job.notBeforeMs !== undefined && job.notBeforeMs > now) {
        reasons[i] = 'not_before';
        continue;
      }
      const pool = this.pools.get(job.pool);
      if (!pool) {
        reasons[i] = 'no_machine_in_pool';
        continue;
      }
      position.set(job, i);
      const queue = queues.get(pool);
      if (queue) queue.push(job);
      else queues.set(pool, [job]);
    }

    // Every routable job gets a machine while its pool has a free slot, so exactly the first `free` jobs of each pool
    // (in routing order) are routed; the others are out of capacity. Only those are sorted and scored.
    let routed: PendingJob[] = [];
    for (const [pool, queue] of queues) {
      const { first, rest } = firstInOrder(queue, pool.free);
      for (const job of rest) reasons[position.get(job)!] = 'no_capacity';
      routed = routed.length === 0 ? first : routed.concat(first);
    }
    if (queues.size > 1) routed.sort(compareJobs);

    if (this.policy !== 'fifo') this.indexHolders(routed);
    if (this.policy === 'affinity') this.prepareAffinity();

    const assignments: Assignment[] = [];
    for (const job of routed) {
      const pool = this.pools.get(job.pool)!;
      const view = this.view(job);
      const choice =
        this.policy === 'fifo'
          ? this.chooseFifo(pool)
          : this.policy === 'adr010'
            ? this.chooseAdr010(view, pool)
            : this.chooseAffinity(view, pool);
      assignments.push(this.assign(view, pool, choice));
    }

    const unassigned: ScheduleResult['unassigned'] = [];
    for (let i = 0; i < jobs.length; i++) {
      const reason = reasons[i];
      if (reason) unassigned.push({ jobId: jobs[i]!.id, reason });
    }
    return { assignments, unassigned };
  }

  /** Inverted index LoRA key → machines of the pool with a free slot that cache it, for the keys routed jobs need. */
  private indexHolders(routed: readonly PendingJob[]): void {
    const needed: [Set<string>, Set<string>] = [new Set(), new Set()];
    for (const job of routed) for (const l of job.loras) needed[kindOf(l)].add(l.key);
    for (const pool of this.pools.values()) {
      for (const i of pool.members) {
        if (this.free[i] === 0) continue;
        const m = this.ms[i]!;
        indexCache(pool.holders[USER], m.cachedUser, needed[USER], i);
        indexCache(pool.holders[SHARED], m.cachedShared, needed[SHARED], i);
      }
    }
  }

  private prepareAffinity(): void {
    const { busy, slots, speed } = this;
    const n = this.ms.length;
    // a before b when a is less loaded (cross-multiplied to stay in integers), then by input order.
    const byLoad = (a: number, b: number): boolean => {
      const d = busy[a]! * slots[b]! - busy[b]! * slots[a]!;
      return d < 0 || (d === 0 && a < b);
    };
    const bySpeed = (a: number, b: number): boolean => speed[a]! > speed[b]! || (speed[a] === speed[b] && a < b);
    for (const pool of this.pools.values()) {
      pool.byLoad = new IndexedHeap(n, byLoad);
      const first = speed[pool.members[0]!]!;
      let mixed = false;
      for (const i of pool.members) {
        this.seeds[i] = machineSeed(this.ms[i]!.id);
        if (speed[i] !== first) mixed = true;
      }
      if (mixed) pool.bySpeed = new IndexedHeap(n, bySpeed);
      for (const i of pool.members) {
        if (this.free[i]! > 0) {
          pool.byLoad.push(i);
          pool.bySpeed?.push(i);
        }
      }
    }
  }

  private view(job: PendingJob): JobView {
    const loras: LoraRef[] = [];
    for (const l of job.loras) {
      if (!loras.some((o) => o.kind === l.kind && o.key === l.key)) loras.push(l);
    }
    let total = 0;
    for (const l of loras) total += l.sizeBytes > 0 ? l.sizeBytes : 0;
    const shares = loras.map((l) => (total > 0 ? (l.sizeBytes > 0 ? l.sizeBytes : 0) / total : 1 / loras.length));
    const avoid: number[] = [];
    for (const id of job.avoidMachines ?? []) {
      const i = this.idIndex.get(id);
      if (i !== undefined && !avoid.includes(i)) avoid.push(i);
    }
    return { job, loras, kinds: loras.map(kindOf), shares, avoid };
  }

  /** First machine of the pool, in input order, with a free slot. */
  private firstFree(pool: PoolState): number {
    while (pool.cursor < pool.members.length && this.free[pool.members[pool.cursor]!] === 0) pool.cursor++;
    return pool.members[pool.cursor]!; // the caller routes only while pool.free > 0
  }

  private chooseFifo(pool: PoolState): Choice {
    return { machine: this.firstFree(pool), score: 1, breakdown: { ...FIFO_BREAKDOWN } };
  }

  private cachedOn(m: number, kind: Kind, key: string): boolean {
    const machine = this.ms[m]!;
    return kind === USER ? machine.cachedUser.has(key) : machine.cachedShared.has(key);
  }

  /**
   * Marks the machines with a free slot that hold (or, for affinity, are receiving) one of the job's LoRAs as
   * candidates, and records in `mask` which of the job's LoRAs each one holds.
   */
  private collectHolders(v: JobView, pool: PoolState, stamp: number): void {
    const { free, mark, mask, cands } = this;
    for (let i = 0; i < v.loras.length && i < MASK_BITS; i++) {
      const list = pool.holders[v.kinds[i]!].get(v.loras[i]!.key);
      if (!list) continue;
      const bit = 1 << i;
      for (const m of list) {
        if (free[m] === 0) continue;
        if (mark[m] !== stamp) {
          mark[m] = stamp;
          mask[m] = 0;
          cands.push(m);
        }
        mask[m]! |= bit;
      }
    }
  }

  private addCandidate(m: number, stamp: number): void {
    if (this.free[m]! > 0 && this.mark[m] !== stamp) {
      this.mark[m] = stamp;
      this.mask[m] = 0;
      this.cands.push(m);
    }
  }

  /** Whether LoRA `i` of the job is on machine `m` (cached, or arriving when the policy tracks arrivals). */
  private holds(v: JobView, m: number, i: number): boolean {
    if (i < MASK_BITS) return this.mark[m] === this.stamp && (this.mask[m]! & (1 << i)) !== 0;
    const kind = v.kinds[i]!;
    const key = v.loras[i]!.key;
    return this.cachedOn(m, kind, key) || (this.policy === 'affinity' && this.arriving[kind][m]?.has(key) === true);
  }

  private chooseAdr010(v: JobView, pool: PoolState): Choice {
    const stamp = ++this.stamp;
    this.cands.length = 0;
    this.collectHolders(v, pool, stamp);
    let best = -1;
    let bestScore = 0;
    for (const m of this.cands) {
      let score = 0;
      for (let i = 0; i < v.loras.length; i++) {
        if (this.holds(v, m, i)) score += v.kinds[i] === USER ? this.w.userHit : this.w.sharedHit;
      }
      if (score > bestScore || (score === bestScore && score > 0 && m < best)) {
        best = m;
        bestScore = score;
      }
    }
    // Routing never blocks on the cache: with no scoring machine, the first machine that passes the filters.
    if (best < 0) best = this.firstFree(pool);
    return { machine: best, score: bestScore, breakdown: { affinity: bestScore } };
  }

  private withinBound(m: number): boolean {
    const after = this.busy[m]! + 1;
    return after <= this.w.loadBoundMinSlots || after <= Math.ceil(this.boundFactor * this.slots[m]! - 1e-9);
  }

  private homesOf(pool: PoolState, kind: Kind, l: LoraRef): number[] {
    let homes = pool.homes[kind].get(l.key);
    if (!homes) {
      homes = hrwTopK(loraSeed(l.kind, l.key), pool.members, this.seeds, HRW_DEPTH);
      pool.homes[kind].set(l.key, homes);
    }
    return homes;
  }

  private chooseAffinity(v: JobView, pool: PoolState): Choice {
    const stamp = ++this.stamp;
    const { cands, targets } = this;
    cands.length = 0;
    targets.length = 0;
    this.boundFactor = (this.w.loadBound * (pool.busy + 1)) / pool.slots;
    this.collectHolders(v, pool, stamp);
    for (let i = 0; i < v.loras.length; i++) {
      const homes = this.homesOf(pool, v.kinds[i]!, v.loras[i]!);
      // The LoRA's home: its first HRW rank with a free slot within the load bound.
      let target = -1;
      for (const m of homes) {
        if (this.free[m]! > 0 && this.withinBound(m)) {
          target = m;
          break;
        }
      }
      targets.push(target);
      for (const m of homes) this.addCandidate(m, stamp);
    }
    if (this.options.exhaustive) {
      for (const m of pool.members) this.addCandidate(m, stamp);
    } else {
      const extra: number[] = [];
      pool.byLoad!.firstK(LEAST_LOADED + v.avoid.length, extra);
      if (pool.bySpeed && v.loras.length > 0) pool.bySpeed.firstK(FASTEST + v.avoid.length, extra);
      for (const m of extra) this.addCandidate(m, stamp);
    }

    let best = -1;
    let bestScore = -Infinity;
    for (const m of cands) {
      const score = this.scoreAffinity(v, m, null);
      if (score > bestScore || (score === bestScore && m < best)) {
        best = m;
        bestScore = score;
      }
    }
    const breakdown: Record<string, number> = {};
    const score = this.scoreAffinity(v, best, breakdown);
    return { machine: best, score, breakdown };
  }

  /** The affinity policy's score of machine `m` for the job; fills `out` with the weighted terms when given. */
  private scoreAffinity(v: JobView, m: number, out: Record<string, number> | null): number {
    const w = this.w;
    let userHits = 0;
    let sharedHits = 0;
    let missingBytes = 0;
    let homeShare = 0;
    for (let i = 0; i < v.loras.length; i++) {
      if (this.holds(v, m, i)) {
        if (v.kinds[i] === USER) userHits++;
        else sharedHits++;
        continue;
      }
      const size = v.loras[i]!.sizeBytes;
      if (size > 0) missingBytes += size;
      if (this.targets[i] === m) homeShare += v.shares[i]!;
    }
    const affinity = w.affinity * (w.userHit * userHits + w.sharedHit * sharedHits);
    const download = -w.download * (missingBytes / this.speed[m]!);
    const load = -w.load * (this.busy[m]! / this.slots[m]!) * this.expectedJobSeconds;
    const hrw = w.hrw * homeShare;
    const avoid = v.avoid.includes(m) ? -w.avoid : 0;
    const overload = this.withinBound(m) ? 0 : -w.overload;
    const total = affinity + download + load + hrw + avoid + overload;
    if (out) {
      out.affinity = clean(affinity);
      out.download = clean(download);
      out.load = clean(load);
      out.hrw = clean(hrw);
      out.avoid = clean(avoid);
      out.overload = clean(overload);
    }
    return clean(total);
  }

  private assign(v: JobView, pool: PoolState, choice: Choice): Assignment {
    const m = choice.machine;
    const hitLoras: string[] = [];
    const missingLoras: string[] = [];
    const arrivingLoras: string[] = [];
    for (let i = 0; i < v.loras.length; i++) {
      const kind = v.kinds[i]!;
      const key = v.loras[i]!.key;
      if (this.cachedOn(m, kind, key)) {
        hitLoras.push(key);
        continue;
      }
      missingLoras.push(key);
      let set = this.arriving[kind][m];
      if (set?.has(key)) {
        arrivingLoras.push(key);
        continue;
      }
      if (!set) set = this.arriving[kind][m] = new Set();
      set.add(key);
      // Only affinity routes later jobs after LoRAs that are on their way; the baselines see the reported cache only.
      if (this.policy === 'affinity') {
        const holders = pool.holders[kind];
        const list = holders.get(key);
        if (list) list.push(m);
        else holders.set(key, [m]);
      }
    }
    this.busy[m]!++;
    this.free[m]!--;
    pool.busy++;
    pool.free--;
    if (pool.byLoad) {
      if (this.free[m] === 0) {
        pool.byLoad.remove(m);
        pool.bySpeed?.remove(m);
      } else {
        pool.byLoad.update(m);
      }
    }
    return {
      jobId: v.job.id,
      machineId: this.ms[m]!.id,
      score: choice.score,
      breakdown: choice.breakdown,
      hitLoras,
      missingLoras,
      arrivingLoras,
      policy: this.policy,
    };
  }
}

function indexCache(index: Map<string, number[]>, cache: ReadonlySet<string>, needed: Set<string>, machine: number): void {
  if (needed.size === 0) return;
  for (const key of cache) {
    if (!needed.has(key)) continue;
    const list = index.get(key);
    if (list) list.push(machine);
    else index.set(key, [machine]);
  }
}

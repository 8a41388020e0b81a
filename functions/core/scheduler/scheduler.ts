// The scheduler pass: filters → weighted scorers → picker, under a named policy. Pure: no I/O, no clock (time is
// `input.nowMs`), no randomness; the same input always gives the same output.
//
// Pass outline
//   1. Jobs in backoff (notBeforeMs > nowMs) and jobs of a pool without live, non-draining machines are set aside.
//   2. Routing order: priority (high first), then createdAtMs (old first), then id. While a pool has a free slot every
//      job gets one, so only the first `free slots` jobs of each pool are sorted and routed; the rest are out of
//      capacity without being scored ("stop early").
//   3. Filters: the job's pool, live, not draining, a free slot. Capacity is consumed as the pass assigns, so no
//      machine gets more than its free slots.
//   4. Policy (picker: highest score, ties by machine input order):
//      - fifo:     first machine in input order that passes the filters (the origin system's behaviour).
//      - adr010:   ADR-010's greedy score, +userHit (10) per required user LoRA cached, +sharedHit (5) per shared one;
//                  a machine with nothing cached still gets the job (score 0). Like the origin, it only sees what the
//                  machines report as cached.
//      - affinity: the sum of the weighted scorers below.
//
// affinity scorers (names = breakdown keys = weight names, see weights.ts for the defaults)
//   affinity  +affinity × (userHit × user LoRAs on the machine + sharedHit × shared LoRAs on the machine). "On the
//             machine" includes LoRAs that an earlier assignment of this pass already sends there ("arriving"), so a
//             burst of jobs for one cold LoRA follows the first one.
//   download  −download × (bytes of the job's LoRAs neither cached nor arriving) / the machine's download speed.
//   load      −load × busySlots/slots × expectedJobSeconds (expected queue wait).
//   hrw       +hrw × (share of the job's LoRA bytes whose rendezvous home this machine is). Only cold LoRAs have a
//             home: those that no machine with a free slot within its load bound holds or is receiving. The home is the
//             first of the LoRA's HRW ranking over the pool's machines (all live, non-draining ones, so the ranking is
//             stable from pass to pass) that has a free slot and is within its load bound: a full or overloaded home
//             spills to the next rank. So the next jobs for that LoRA, in this pass or the next ones (before any
//             heartbeat reports the new copy), prefer the same machine.
//   avoid     −avoid if an earlier attempt of the job was lost on this machine.
//   overload  −overload if the machine is over its bound: busy slots after the job
//             > max(loadBoundMinSlots, ceil(loadBound × pool utilisation after the job × slots)).
//   evict     (only when the `evict` weight is > 0) −evict × (missing bytes beyond the machine's free cache space) /
//             its download speed: prefer machines where the download evicts nothing.
//
// affinity delay rule (`delay` > 0, default 2; size-aware delay scheduling): when the picked machine would download
// some of the job's LoRAs, the job stays pending (reason `delayed`) if a machine without a free slot that holds more of
// them is expected to start it (slot free, from `busySinceMs`, + its own download there) within `delay` × the download
// time on the picked machine, and the job's age + that wait ≤ `delayCapSeconds`. A held job's slot goes to the next
// jobs in routing order (the pass routes in batches until the pool's slots or jobs run out). With `hitFirst` > 0 the
// jobs of a batch that can start without any download are placed before the others.
//
// Multi-LoRA jobs: affinity is summed per LoRA (ADR-010), missing bytes are summed (one download time), and the HRW
// term is weighted by LoRA size, so the home of the job's largest cold LoRA dominates.
//
// Candidates (affinity), exact but cheap: the pass does not score every machine for every job. It scores the machines
// that hold or are receiving one of the job's less common LoRAs (inverted index key → machines), the HRW homes of its
// cold LoRAs, and then walks the machines with a free slot from the least loaded up (a per-pool heap), stopping as soon
// as an upper bound of any machine not yet scored (all widespread LoRAs hit, the rest downloaded at the pool's best
// speed, its own load, no penalty) falls below the best score. So the pick is the one an exhaustive pass makes (a test
// compares both on random inputs), at the cost of a handful of scores per job.
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
/**
 * affinity: a LoRA cached on more than this share of the pool's machines (and more than WIDESPREAD_MIN of them) is not
 * enumerated per job (see collectHolders): the walk over the least-loaded machines meets one of its holders quickly.
 */
const WIDESPREAD_SHARE = 0.3;
const WIDESPREAD_MIN = 16;
/** affinity `delay`: a busy job past its expected run time is still expected to run this share of it. */
const RESIDUAL_FLOOR = 0.3;

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
  /** affinity with `delay`: LoRA key → machines without a free slot at pass start holding it. */
  busyHolders: [Map<string, number[]>, Map<string, number[]>];
  /** LoRA key → first HRW ranks over `members`. */
  homes: [Map<string, number[]>, Map<string, number[]>];
  /** affinity: machines with a free slot by load (busy/slots), then input order. */
  byLoad: IndexedHeap | null;
  /** affinity: the best download speed among the members. */
  maxSpeed: number;
  /** affinity: holder count above which a LoRA is widespread. */
  widespread: number;
  /** Indices of the pass's routable jobs for this pool. */
  queue: number[] | null;
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

/** Routing order: higher priority first, then older, then by id. */
export function compareJobs(a: PendingJob, b: PendingJob): number {
  if (a.priority !== b.priority) return b.priority - a.priority;
  if (a.createdAtMs !== b.createdAtMs) return a.createdAtMs - b.createdAtMs;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

const TWO_POW_42 = 2 ** 42;

/**
 * (priority, createdAtMs) packed into one exact double that sorts in routing order, or NaN when the values do not fit
 * (priority an integer in 0..1023, createdAtMs an integer in [0, 2^42), i.e. before the year 2109).
 */
function packedRank(job: PendingJob): number {
  const p = job.priority;
  const t = job.createdAtMs;
  if (!Number.isInteger(p) || p < 0 || p > 1023 || !Number.isInteger(t) || t < 0 || t >= TWO_POW_42) return NaN;
  return (1023 - p) * TWO_POW_42 + t;
}

const clean = (x: number): number => (x === 0 ? 0 : x); // no -0 in breakdowns

/**
 * Splits `indices` into the `k` first by `cmp` (a strict total order), sorted, and the rest (unsorted). A bounded
 * max-heap: O(n log k) in the worst case, about O(n) when most jobs lose to the k-th best at the first comparison.
 */
export function firstInOrder(
  indices: readonly number[],
  k: number,
  cmp: (a: number, b: number) => number,
): { first: number[]; rest: number[] } {
  if (indices.length <= k) return { first: [...indices].sort(cmp), rest: [] };
  const heap: number[] = []; // heap[0] is the last in routing order among those kept
  const rest: number[] = [];
  for (const job of indices) {
    if (heap.length < k) {
      let i = heap.length;
      heap.push(job);
      while (i > 0) {
        const p = (i - 1) >> 1;
        if (cmp(heap[p]!, job) >= 0) break;
        heap[i] = heap[p]!;
        i = p;
      }
      heap[i] = job;
    } else if (k > 0 && cmp(job, heap[0]!) < 0) {
      rest.push(heap[0]!);
      let i = 0;
      const n = heap.length;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= n) break;
        const r = l + 1;
        const c = r < n && cmp(heap[r]!, heap[l]!) > 0 ? r : l;
        if (cmp(heap[c]!, job) <= 0) break;
        heap[i] = heap[c]!;
        i = c;
      }
      heap[i] = job;
    } else {
      rest.push(job);
    }
  }
  return { first: heap.sort(cmp), rest };
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
  /** Per LoRA of the current job: held by a machine with a free slot within its bound. */
  private readonly warm: boolean[] = [];
  /** Per LoRA of the current job: hits checked directly instead of through `mask`. */
  private readonly direct: boolean[] = [];
  /** Per job: loadBound × pool utilisation after the job, the factor of the bounded-load cap. */
  private boundFactor = 0;
  /** affinity `evict`: bytes an earlier assignment of this pass already sends to each machine. */
  private readonly incoming: Float64Array;
  /** affinity `delay`: jobs of this pass held back for each machine; marks for the holder scan. */
  private readonly waiters: Int32Array;
  private readonly dmark: Int32Array;
  private dstamp = 0;
  /** affinity `delay`: per machine, the expected seconds until each of its busy slots frees, ascending (lazy). */
  private readonly residuals = new Map<number, number[]>();

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
    this.incoming = new Float64Array(n);
    this.waiters = new Int32Array(n);
    this.dmark = new Int32Array(n);
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
          busyHolders: [new Map(), new Map()],
          homes: [new Map(), new Map()],
          byLoad: null,
          maxSpeed: 0,
          widespread: 0,
          queue: null,
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
    const queues: { pool: PoolState; jobs: number[] }[] = [];
    const rank = new Float64Array(jobs.length);
    let packed = true;
    const now = this.input.nowMs;
    for (let i = 0; i < jobs.length; i++) {
      const job = jobs[i]!;
      if (job.notBeforeMs !== undefined && job.notBeforeMs > now) {
        reasons[i] = 'not_before';
        continue;
      }
      const pool = this.pools.get(job.pool);
      if (!pool) {
        reasons[i] = 'no_machine_in_pool';
        continue;
      }
      if (pool.queue === null) {
        pool.queue = [];
        queues.push({ pool, jobs: pool.queue });
      }
      pool.queue.push(i);
      const r = packedRank(job);
      if (r !== r) packed = false;
      rank[i] = r;
    }
    const cmp = packed
      ? (a: number, b: number): number => {
          const d = rank[a]! - rank[b]!;
          if (d !== 0) return d;
          const x = jobs[a]!.id;
          const y = jobs[b]!.id;
          return x < y ? -1 : x > y ? 1 : a - b;
        }
      : (a: number, b: number): number => compareJobs(jobs[a]!, jobs[b]!) || a - b;

    if (this.policy === 'affinity' && (this.w.delay > 0 || this.w.hitFirst > 0)) {
      return this.runAffinityExtended(queues, reasons, cmp);
    }

    // Every routable job gets a machine while its pool has a free slot, so exactly the first `free` jobs of each pool
    // (in routing order) are routed; the others are out of capacity. Only those are sorted and scored.
    let order: number[] = [];
    for (const q of queues) {
      const { first, rest } = firstInOrder(q.jobs, q.pool.free, cmp);
      for (const i of rest) reasons[i] = 'no_capacity';
      order = order.length === 0 ? first : order.concat(first);
    }
    if (queues.length > 1) order.sort(cmp);
    // Job ids are unique in a well-formed input; a repeated id is still routed at most once (its first in order).
    const routed: PendingJob[] = [];
    const seen = new Set<string>();
    for (const i of order) {
      const job = jobs[i]!;
      if (seen.has(job.id)) continue;
      seen.add(job.id);
      routed.push(job);
    }

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

  /**
   * affinity with `delay` and/or `hitFirst`. Per pool, in batches: the first `free` jobs in routing order are routed
   * (with `hitFirst`, those that can start without a download on their best machine are placed first); a job the delay
   * rule holds back leaves its slot to the next jobs in routing order, so the pass still fills every free slot it can.
   */
  private runAffinityExtended(
    queues: { pool: PoolState; jobs: number[] }[],
    reasons: (UnassignedReason | undefined)[],
    cmp: (a: number, b: number) => number,
  ): ScheduleResult {
    const jobs = this.input.jobs;
    const delayOn = this.w.delay > 0;
    const seen = new Set<string>();
    const batches = queues.map((q) => firstInOrder(q.jobs, q.pool.free, cmp));
    // With delay, later batches may be routed: index the LoRAs of every queued job.
    const indexed: PendingJob[] = [];
    for (let b = 0; b < queues.length; b++) {
      for (const i of delayOn ? queues[b]!.jobs : batches[b]!.first) indexed.push(jobs[i]!);
    }
    this.indexHolders(indexed);
    this.prepareAffinity();
    const placed: { index: number; assignment: Assignment }[] = [];
    for (let b = 0; b < queues.length; b++) {
      const pool = queues[b]!.pool;
      let { first, rest } = batches[b]!;
      for (;;) {
        const views: { index: number; view: JobView }[] = [];
        for (const i of first) {
          const job = jobs[i]!;
          if (seen.has(job.id)) continue; // a repeated id is routed at most once
          seen.add(job.id);
          views.push({ index: i, view: this.view(job) });
        }
        let deferred = views;
        if (this.w.hitFirst > 0) {
          deferred = [];
          for (const x of views) {
            const choice = this.chooseAffinity(x.view, pool);
            if (this.missingOn(x.view, choice.machine).count === 0) {
              placed.push({ index: x.index, assignment: this.assign(x.view, pool, choice) });
            } else {
              deferred.push(x);
            }
          }
        }
        for (const x of deferred) {
          const choice = this.chooseAffinity(x.view, pool);
          if (delayOn && this.shouldDelay(x.view, pool, choice.machine)) {
            reasons[x.index] = 'delayed';
            continue;
          }
          placed.push({ index: x.index, assignment: this.assign(x.view, pool, choice) });
        }
        if (pool.free === 0 || rest.length === 0) break;
        ({ first, rest } = firstInOrder(rest, pool.free, cmp));
      }
      for (const i of rest) reasons[i] = 'no_capacity';
    }
    placed.sort((a, b) => cmp(a.index, b.index));
    const unassigned: ScheduleResult['unassigned'] = [];
    for (let i = 0; i < jobs.length; i++) {
      const reason = reasons[i];
      if (reason) unassigned.push({ jobId: jobs[i]!.id, reason });
    }
    return { assignments: placed.map((p) => p.assignment), unassigned };
  }

  /** The job's LoRAs machine `m` neither caches nor is receiving (after chooseAffinity for this job): count, bytes. */
  private missingOn(v: JobView, m: number): { count: number; bytes: number } {
    let count = 0;
    let bytes = 0;
    for (let i = 0; i < v.loras.length; i++) {
      if (this.holds(v, m, i)) continue;
      count++;
      if (v.loras[i]!.sizeBytes > 0) bytes += v.loras[i]!.sizeBytes;
    }
    return { count, bytes };
  }

  /** Like `holds`, for any machine of the pool (no candidate masks). */
  private holdsAny(v: JobView, m: number, i: number): boolean {
    const kind = v.kinds[i]!;
    const key = v.loras[i]!.key;
    return this.cachedOn(m, kind, key) || this.arriving[kind][m]?.has(key) === true;
  }

  /**
   * Expected seconds until machine `m` frees its (c+1)-th slot: from the busy jobs' assignment times when the machine
   * reports them (residual = expected run time − age, at least RESIDUAL_FLOOR of it; jobs assigned in this pass count a
   * whole expected run), else expectedJobSeconds × (c+1) / slots. Infinity when c ≥ its busy slots.
   */
  private freeInSeconds(m: number, c: number): number {
    const busy = this.busy[m]!;
    if (c >= busy) return Infinity;
    const T = this.expectedJobSeconds;
    const since = this.ms[m]!.busySinceMs;
    if (!since) return (T * (c + 1)) / Math.max(1, this.slots[m]!);
    let list = this.residuals.get(m);
    if (!list) {
      list = [];
      const now = this.input.nowMs;
      for (const s of since) list.push(Math.max(T - (now - s) / 1000, T * RESIDUAL_FLOOR));
      list.sort((a, b) => a - b);
      this.residuals.set(m, list);
    }
    // Slots taken in this pass (or not covered by busySinceMs) free after about a whole run.
    return c < list.length ? list[c]! : T;
  }

  /**
   * The delay rule. The job would download `bytes` on machine `b`. It stays pending if a machine without a free slot
   * that holds more of its LoRAs (fewer missing bytes) is expected to start it — slot free + its own download there —
   * within `delay × the download time on b`, and the job's age plus that wait stays within `delayCapSeconds`. Each
   * held-back job takes one expected slot of its machine, so later jobs of the pass wait for the next one.
   */
  private shouldDelay(v: JobView, pool: PoolState, b: number): boolean {
    const miss = this.missingOn(v, b);
    if (miss.count === 0) return false;
    const w = this.w;
    const age = Math.max(0, (this.input.nowMs - v.job.createdAtMs) / 1000);
    const limit = Math.min(w.delay * (miss.bytes / this.speed[b]!), w.delayCapSeconds - age);
    if (!(limit > 0)) return false;
    const stamp = ++this.dstamp;
    let best = -1;
    let bestWait = Infinity;
    for (let i = 0; i < v.loras.length; i++) {
      const kind = v.kinds[i]!;
      const key = v.loras[i]!.key;
      for (const list of [pool.holders[kind].get(key), pool.busyHolders[kind].get(key)]) {
        if (!list) continue;
        for (const h of list) {
          if (this.dmark[h] === stamp || this.free[h]! > 0) continue; // free machines were scored already
          this.dmark[h] = stamp;
          let bytes = 0;
          let count = 0;
          for (let k = 0; k < v.loras.length; k++) {
            if (this.holdsAny(v, h, k)) continue;
            count++;
            if (v.loras[k]!.sizeBytes > 0) bytes += v.loras[k]!.sizeBytes;
          }
          if (count >= miss.count && bytes >= miss.bytes) continue;
          const wait = this.freeInSeconds(h, this.waiters[h]!) + bytes / this.speed[h]!;
          if (wait < bestWait || (wait === bestWait && h < best)) {
            bestWait = wait;
            best = h;
          }
        }
      }
    }
    if (best < 0 || bestWait > limit) return false;
    this.waiters[best]!++;
    return true;
  }

  /** Inverted index LoRA key → machines of the pool with a free slot that cache it, for the keys routed jobs need. */
  private indexHolders(routed: readonly PendingJob[]): void {
    for (const job of routed) {
      const holders = this.pools.get(job.pool)!.holders;
      for (const l of job.loras) {
        const index = holders[kindOf(l)];
        if (!index.has(l.key)) index.set(l.key, []);
      }
    }
    const delayOn = this.policy === 'affinity' && this.w.delay > 0;
    if (delayOn) {
      for (const pool of this.pools.values()) {
        for (const kind of [USER, SHARED] as const) {
          for (const key of pool.holders[kind].keys()) pool.busyHolders[kind].set(key, []);
        }
      }
    }
    for (const pool of this.pools.values()) {
      for (const i of pool.members) {
        const m = this.ms[i]!;
        if (this.free[i] === 0) {
          if (!delayOn) continue;
          indexCache(pool.busyHolders[USER], m.cachedUser, i);
          indexCache(pool.busyHolders[SHARED], m.cachedShared, i);
          continue;
        }
        indexCache(pool.holders[USER], m.cachedUser, i);
        indexCache(pool.holders[SHARED], m.cachedShared, i);
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
    for (const pool of this.pools.values()) {
      pool.byLoad = new IndexedHeap(n, byLoad);
      pool.widespread = Math.max(WIDESPREAD_MIN, Math.floor(pool.members.length * WIDESPREAD_SHARE));
      for (const i of pool.members) {
        this.seeds[i] = machineSeed(this.ms[i]!.id);
        if (speed[i]! > pool.maxSpeed) pool.maxSpeed = speed[i]!;
        if (this.free[i]! > 0) pool.byLoad.push(i);
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
   * Makes candidates of the machines with a free slot that hold (or, for affinity, are receiving) one of the job's
   * LoRAs, and records in `mask` which of the job's LoRAs each one holds. With `affinity`, a LoRA held by more than
   * `pool.widespread` machines is not enumerated: its hits are checked per candidate (`direct`), and the bounded walk over
   * the least-loaded machines finds the best of its holders. Also records, for affinity, whether each LoRA is warm.
   */
  private collectHolders(v: JobView, pool: PoolState, stamp: number, affinity: boolean): void {
    const { free, mark, mask, cands, direct, warm } = this;
    direct.length = 0;
    warm.length = 0;
    for (let i = 0; i < v.loras.length; i++) {
      const list = pool.holders[v.kinds[i]!].get(v.loras[i]!.key);
      let isWarm = false;
      if (i >= MASK_BITS || (affinity && list !== undefined && list.length > pool.widespread)) {
        direct.push(true);
        if (affinity && list) {
          for (const m of list) {
            if (free[m]! > 0 && this.withinBound(m)) {
              isWarm = true;
              break;
            }
          }
        } else if (list) {
          for (const m of list) this.addCandidate(m, stamp);
        }
      } else {
        direct.push(false);
        if (list) {
          const bit = 1 << i;
          for (const m of list) {
            if (free[m] === 0) continue;
            if (mark[m] !== stamp) {
              mark[m] = stamp;
              mask[m] = 0;
              cands.push(m);
            }
            mask[m]! |= bit;
            if (affinity && !isWarm) isWarm = this.withinBound(m);
          }
        }
      }
      warm.push(isWarm);
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
    if (!this.direct[i]) return this.mark[m] === this.stamp && (this.mask[m]! & (1 << i)) !== 0;
    const kind = v.kinds[i]!;
    const key = v.loras[i]!.key;
    return this.cachedOn(m, kind, key) || (this.policy === 'affinity' && this.arriving[kind][m]?.has(key) === true);
  }

  private chooseAdr010(v: JobView, pool: PoolState): Choice {
    const stamp = ++this.stamp;
    this.cands.length = 0;
    this.collectHolders(v, pool, stamp, false);
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
    const { cands, targets, warm, direct, w } = this;
    cands.length = 0;
    targets.length = 0;
    this.boundFactor = (w.loadBound * (pool.busy + 1)) / pool.slots;
    this.collectHolders(v, pool, stamp, true);
    for (let i = 0; i < v.loras.length; i++) {
      // A LoRA that a machine with a free slot within its bound holds (or is receiving) is warm: affinity handles it.
      // A cold one gets a home: its first HRW rank with a free slot within the load bound.
      if (warm[i]) {
        targets.push(-1);
        continue;
      }
      const homes = this.homesOf(pool, v.kinds[i]!, v.loras[i]!);
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
    const loadScale = w.load * this.expectedJobSeconds;
    if (this.options.exhaustive || !(loadScale > 0)) {
      // Without a load term the walk below has no order to prune with: score the whole pool.
      for (const m of pool.members) this.addCandidate(m, stamp);
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

    if (!this.options.exhaustive && loadScale > 0) {
      // Any machine that is not a candidate yet holds none of the enumerated LoRAs and is no LoRA's home. Its score is
      // at most: every widespread LoRA a hit, the enumerated LoRAs' bytes at the pool's best download speed, its own
      // load, no penalty. Walk the machines with a free slot from the least loaded up and stop once that bound cannot
      // beat (or tie with a lower index) the best so far. The bound is written like scoreAffinity so that a machine
      // reaching it scores exactly the bound.
      let userHits = 0;
      let sharedHits = 0;
      let bytes = 0;
      for (let i = 0; i < v.loras.length; i++) {
        if (direct[i]) {
          if (v.kinds[i] === USER) userHits++;
          else sharedHits++;
        } else if (v.loras[i]!.sizeBytes > 0) {
          bytes += v.loras[i]!.sizeBytes;
        }
      }
      const affinity = w.affinity * (w.userHit * userHits + w.sharedHit * sharedHits);
      const download = -w.download * (bytes / pool.maxSpeed);
      pool.byLoad!.walk((m) => {
        const load = -w.load * (this.busy[m]! / this.slots[m]!) * this.expectedJobSeconds;
        const bound = affinity + download + load + 0 + 0 + 0;
        // Heap order is (load, index): past this point nothing can beat or tie with a lower index.
        if (bound < bestScore || (bound === bestScore && m > best)) return false;
        if (this.mark[m] !== stamp) {
          this.addCandidate(m, stamp);
          const score = this.scoreAffinity(v, m, null);
          if (score > bestScore || (score === bestScore && m < best)) {
            best = m;
            bestScore = score;
          }
        }
        return true;
      });
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
    let evict = 0;
    if (w.evict > 0 && missingBytes > 0) {
      const machine = this.ms[m]!;
      const room = Math.max(0, machine.budgetBytes - machine.usedBytes - this.incoming[m]!);
      evict = -w.evict * (Math.max(0, missingBytes - room) / this.speed[m]!);
    }
    const total = affinity + download + load + hrw + avoid + overload + evict;
    if (out) {
      out.affinity = clean(affinity);
      out.download = clean(download);
      out.load = clean(load);
      out.hrw = clean(hrw);
      out.avoid = clean(avoid);
      out.overload = clean(overload);
      if (w.evict > 0) out.evict = clean(evict);
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
      if (v.loras[i]!.sizeBytes > 0) this.incoming[m]! += v.loras[i]!.sizeBytes;
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

function indexCache(index: Map<string, number[]>, cache: ReadonlySet<string>, machine: number): void {
  if (index.size === 0) return;
  for (const key of cache) index.get(key)?.push(machine);
}

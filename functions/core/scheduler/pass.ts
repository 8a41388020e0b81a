// One scheduling pass: set aside what cannot be routed, pick the jobs to route in routing order, let the policy choose
// a machine for each, record the assignments. Pure: no I/O, no clock (time is `input.nowMs`), no randomness.
//   1. Jobs in backoff (notBeforeMs > nowMs) and jobs of a pool without a machine that passes the machine filters
//      (filters/: live, not draining, receiving, accepts work) are set aside.
//   2. Routing order (order.ts). While a pool has a free slot every job gets one, so only the first `free slots` jobs
//      of each pool are sorted and routed; the rest are out of capacity without being scored ("stop early").
//   3. Filters: the job's pool, the machine filters (registry.ts), a free slot. Capacity is consumed as the pass assigns (state.ts),
//      so no machine gets more than its free slots.
//   4. Policy: policies/fifo.ts, policies/adr010.ts, policies/affinity.ts (scorers from registry.ts); for affinity,
//      the delay rule (delay.ts) may hold a job back, and the pass then routes in batches (`routeInBatches`).
import { CandidateIndex } from './candidates.js';
import { DelayRule } from './delay.js';
import { firstInOrder, packedRank, routingComparator } from './order.js';
import { Adr010Policy } from './policies/adr010.js';
import { AffinityPolicy } from './policies/affinity.js';
import { FifoPolicy } from './policies/fifo.js';
import { SCORERS } from './registry.js';
import type { Scorer } from './scorers/scorer.js';
import { PassState, type JobView, type PoolState } from './state.js';
import type { Assignment, PendingJob, ScheduleResult, SchedulerInput, UnassignedReason } from './types.js';
import { assertPolicyName, resolveWeights } from './weights.js';

/** What an experiment (the simulator's) may add to the affinity policy; production runs none. */
export interface SchedulerExtensions {
  /** Scorers summed after the registered ones; their weights become valid names in `SchedulerInput.weights`. */
  scorers?: readonly Scorer[];
  /**
   * Per batch of routed jobs, those whose picked machine would have to download what this accepts (the job's missing
   * LoRAs there: count, bytes) are placed in a first round, then the others in routing order (e.g. hit-first).
   */
  firstRound?: (missing: { count: number; bytes: number }) => boolean;
}

type Queue = { pool: PoolState; jobs: Int32Array };

// Why a job is not assigned, per job index (0 = routed or still to route); typed arrays keep per-job state off the
// garbage-collected heap (a pass may see 100 000 jobs).
const NOT_BEFORE = 1;
const NO_MACHINE = 2;
const NO_CAPACITY = 3;
const DELAYED = 4;
const REASONS: readonly (UnassignedReason | undefined)[] = [
  undefined,
  'not_before',
  'no_machine_in_pool',
  'no_capacity',
  'delayed',
];

/** Runs one pass. `exhaustive` is for tests only (testkit): the affinity policy then scores every machine. */
export function runPass(input: SchedulerInput, extensions: SchedulerExtensions, exhaustive: boolean): ScheduleResult {
  const policy = assertPolicyName(input.policy);
  const extra = extensions.scorers ?? [];
  const weights = resolveWeights(input.weights, extra);
  const state = new PassState(input, policy, weights);
  const scorers = extra.length === 0 ? SCORERS : [...SCORERS, ...extra];
  return new Pass(state, scorers, extensions, exhaustive).run();
}

class Pass {
  private readonly index: CandidateIndex;
  private readonly fifo: FifoPolicy;
  private readonly adr010: Adr010Policy;
  private readonly affinity: AffinityPolicy;

  constructor(
    private readonly s: PassState,
    scorers: readonly Scorer[],
    private readonly extensions: SchedulerExtensions,
    exhaustive: boolean,
  ) {
    this.index = new CandidateIndex(s);
    this.fifo = new FifoPolicy(this.index);
    this.adr010 = new Adr010Policy(s, this.index);
    this.affinity = new AffinityPolicy(s, this.index, scorers, exhaustive);
  }

  run(): ScheduleResult {
    const { s } = this;
    const jobs = s.input.jobs;
    const reasons = new Uint8Array(jobs.length);
    /** For `delayed`: the machine the job waits for, + 1. */
    const waitFor = new Int32Array(jobs.length);
    const pools: PoolState[] = [];
    const sizes: number[] = [];
    const queueOf = new Int32Array(jobs.length);
    const rank = new Float64Array(jobs.length);
    let packed = true;
    const now = s.input.nowMs;
    for (let i = 0; i < jobs.length; i++) {
      const job = jobs[i]!;
      if (job.notBeforeMs !== undefined && job.notBeforeMs > now) {
        reasons[i] = NOT_BEFORE;
        continue;
      }
      const pool = s.pools.get(job.pool);
      if (!pool) {
        reasons[i] = NO_MACHINE;
        continue;
      }
      if (pool.queue < 0) {
        pool.queue = pools.length;
        pools.push(pool);
        sizes.push(0);
      }
      sizes[pool.queue]!++;
      queueOf[i] = pool.queue;
      const r = packedRank(job);
      if (r !== r) packed = false;
      rank[i] = r;
    }
    // Each pool's routable jobs, in input order.
    const queues: Queue[] = pools.map((pool, q) => ({ pool, jobs: new Int32Array(sizes[q]!) }));
    const filled = new Int32Array(queues.length);
    for (let i = 0; i < jobs.length; i++) {
      if (reasons[i] !== 0) continue;
      const q = queueOf[i]!;
      queues[q]!.jobs[filled[q]!++] = i;
    }
    const cmp = routingComparator(jobs, rank, packed);

    if (s.policy === 'affinity' && (s.w.delay > 0 || this.extensions.firstRound)) {
      return this.routeInBatches(queues, reasons, waitFor, cmp);
    }

    // Every routable job gets a machine while its pool has a free slot, so exactly the first `free` jobs of each pool
    // (in routing order) are routed; the others are out of capacity. Only those are sorted and scored.
    let order: number[] = [];
    for (const q of queues) {
      const { first, rest } = firstInOrder(q.jobs, q.pool.free, cmp);
      for (let k = 0; k < rest.length; k++) reasons[rest[k]!] = NO_CAPACITY;
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

    if (s.policy !== 'fifo') this.index.indexHolders(routed);
    if (s.policy === 'affinity') this.index.prepareLoadWalk();

    const assignments: Assignment[] = [];
    for (const job of routed) {
      const pool = s.pools.get(job.pool)!;
      const view = s.view(job);
      const choice =
        s.policy === 'fifo'
          ? this.fifo.choose(pool)
          : s.policy === 'adr010'
            ? this.adr010.choose(view, pool)
            : this.affinity.choose(view, pool);
      assignments.push(s.assign(view, pool, choice));
    }
    return { assignments, unassigned: this.unassigned(reasons, waitFor) };
  }

  /**
   * affinity with `delay` and/or a `firstRound` extension. Per pool, in batches: the first `free` jobs in routing order
   * are routed (those `firstRound` accepts first); a job the delay rule holds back leaves its slot to the next jobs in
   * routing order, so the pass still fills every free slot it can.
   */
  private routeInBatches(
    queues: Queue[],
    reasons: Uint8Array,
    waitFor: Int32Array,
    cmp: (a: number, b: number) => number,
  ): ScheduleResult {
    const { s, affinity } = this;
    const jobs = s.input.jobs;
    const delayOn = s.w.delay > 0;
    const delay = new DelayRule(s, this.index);
    const firstRound = this.extensions.firstRound;
    const seen = new Set<string>();
    const batches = queues.map((q) => firstInOrder(q.jobs, q.pool.free, cmp));
    const firstJobs: PendingJob[] = [];
    for (const batch of batches) for (const i of batch.first) firstJobs.push(jobs[i]!);
    this.index.indexHolders(firstJobs);
    this.index.prepareLoadWalk();
    // Held-back jobs leave slots to later batches: index the LoRAs of every queued job the first time one is routed.
    let allIndexed = false;
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
          views.push({ index: i, view: s.view(job) });
        }
        let deferred = views;
        if (firstRound) {
          deferred = [];
          for (const x of views) {
            const choice = affinity.choose(x.view, pool);
            if (firstRound(delay.missingOn(x.view, choice.machine))) {
              placed.push({ index: x.index, assignment: s.assign(x.view, pool, choice) });
            } else {
              deferred.push(x);
            }
          }
        }
        for (const x of deferred) {
          const choice = affinity.choose(x.view, pool);
          if (delayOn && delay.shouldDelay(x.view, choice.machine)) {
            reasons[x.index] = DELAYED;
            waitFor[x.index] = delay.holder + 1;
            continue;
          }
          placed.push({ index: x.index, assignment: s.assign(x.view, pool, choice) });
        }
        if (pool.free === 0 || rest.length === 0) break;
        ({ first, rest } = firstInOrder(rest, pool.free, cmp));
        if (delayOn && !allIndexed) {
          const queued: PendingJob[] = [];
          for (const q of queues) for (let k = 0; k < q.jobs.length; k++) queued.push(jobs[q.jobs[k]!]!);
          this.index.indexHolders(queued);
          allIndexed = true;
        }
      }
      for (let k = 0; k < rest.length; k++) reasons[rest[k]!] = NO_CAPACITY;
    }
    placed.sort((a, b) => cmp(a.index, b.index));
    return { assignments: placed.map((p) => p.assignment), unassigned: this.unassigned(reasons, waitFor) };
  }

  private unassigned(reasons: Uint8Array, waitFor: Int32Array): ScheduleResult['unassigned'] {
    const jobs = this.s.input.jobs;
    let count = 0;
    for (let i = 0; i < jobs.length; i++) if (reasons[i] !== 0) count++;
    const unassigned: ScheduleResult['unassigned'] = new Array(count);
    let k = 0;
    for (let i = 0; i < jobs.length; i++) {
      const reason = REASONS[reasons[i]!];
      if (!reason) continue;
      const machine = waitFor[i]! - 1;
      unassigned[k++] =
        machine < 0 ? { jobId: jobs[i]!.id, reason } : { jobId: jobs[i]!.id, reason, machineId: this.s.ms[machine]!.id };
    }
    return unassigned;
  }
}

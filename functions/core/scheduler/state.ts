// The state of one scheduling pass: the machines' slots and speeds as the pass consumes them, the pools, and the
// assignments made so far (which LoRAs each one sends where). Policies, the candidate index, the scorers and the delay
// rule all read it; only `assign` changes it.
import type { IndexedHeap } from './heap.js';
import { HolderIndex } from './holders.js';
import { SlotWait } from './slot-wait.js';
import { MACHINE_FILTERS } from './registry.js';
import type { Assignment, LoraRef, MachineState, PendingJob, SchedulerInput } from './types.js';
import {
  DEFAULT_DOWNLOAD_BYTES_PER_SECOND,
  DEFAULT_EXPECTED_JOB_SECONDS,
  type PolicyName,
  type Weights,
} from './weights.js';

export const USER = 0;
export const SHARED = 1;
export type Kind = typeof USER | typeof SHARED;
export const kindOf = (l: LoraRef): Kind => (l.kind === 'user' ? USER : SHARED);

export interface PoolState {
  /** The pool's machines that pass every machine filter (live, not draining, receiving), in input order. */
  members: number[];
  slots: number;
  busy: number;
  free: number;
  /** fifo/adr010: position in `members` before which no machine has a free slot. */
  cursor: number;
  /** LoRA key → its id in the holder index (holders.ts), by kind. */
  keyIds: [Map<string, number>, Map<string, number>];
  /** affinity: machines with a free slot by load (busy/slots), then input order. */
  byLoad: IndexedHeap | null;
  /** affinity: the best download speed among the members. */
  maxSpeed: number;
  /** affinity: holder count above which a LoRA is widespread. */
  widespread: number;
  /** pass.ts: the index of this pool's queue of routable jobs, -1 before its first one. */
  queue: number;
}

export interface JobView {
  job: PendingJob;
  /** The job's LoRAs without duplicates. */
  loras: readonly LoraRef[];
  kinds: Kind[];
  /** Weight of each LoRA in the HRW term: its share of the job's bytes (equal shares if sizes are unknown). */
  shares: number[];
  avoid: number[];
  /** Per LoRA: its id in the pass's holder index (holders.ts); empty for `fifo`, which reads no caches. */
  ids: number[];
}

export interface Choice {
  machine: number;
  score: number;
  breakdown: Record<string, number>;
  /** Other scored machines, best first (only with `SchedulerInput.runnersUp` > 0). */
  runnersUp?: { machine: number; score: number; breakdown: Record<string, number> }[];
  /**
   * From the candidate index (candidates.ts `heldOn`), so `assign` need not ask the machine's cache: bit i of `known`
   * set when the index covers LoRA i of the job, and then bit i of `held` whether the machine caches it (or, for
   * affinity, receives it in this pass).
   */
  known?: number;
  held?: number;
}

export class PassState {
  readonly ms: readonly MachineState[];
  /** Jobs each machine runs at once. */
  readonly slots: Int32Array;
  /** Jobs each machine may hold: slots + queue depth. `free` counts against this. */
  readonly capacity: Int32Array;
  readonly busy: Int32Array;
  readonly free: Int32Array;
  readonly speed: Float64Array;
  readonly seeds: Uint32Array;
  readonly pools = new Map<string, PoolState>();
  readonly idIndex = new Map<string, number>();
  /** Per machine: LoRA keys an earlier assignment of this pass sends there (by kind). */
  readonly arriving: [(Set<string> | undefined)[], (Set<string> | undefined)[]];
  /** Bytes an earlier assignment of this pass already sends to each machine. */
  readonly incoming: Float64Array;
  readonly expectedJobSeconds: number;
  /** When each machine can start one more job (delay rule, `start` scorer). */
  readonly slotWait: SlotWait;
  /** Which machines of a pool cache (or, affinity, receive) each LoRA the pass needs. */
  readonly holders: HolderIndex;

  constructor(
    readonly input: SchedulerInput,
    readonly policy: PolicyName,
    readonly w: Weights,
  ) {
    const ms = input.machines;
    const n = ms.length;
    this.ms = ms;
    this.slots = new Int32Array(n);
    this.capacity = new Int32Array(n);
    this.busy = new Int32Array(n);
    this.free = new Int32Array(n);
    this.speed = new Float64Array(n);
    this.seeds = new Uint32Array(n);
    this.arriving = [new Array(n), new Array(n)];
    this.incoming = new Float64Array(n);
    this.slotWait = new SlotWait(this);
    this.holders = new HolderIndex(this);
    this.expectedJobSeconds =
      input.expectedJobSeconds !== undefined && input.expectedJobSeconds >= 0
        ? input.expectedJobSeconds
        : DEFAULT_EXPECTED_JOB_SECONDS;
    const defaultSpeed =
      input.defaultDownloadBytesPerSecond !== undefined && input.defaultDownloadBytesPerSecond > 0
        ? input.defaultDownloadBytesPerSecond
        : DEFAULT_DOWNLOAD_BYTES_PER_SECOND;

    // Filters that do not depend on the job (registry.ts: live, not draining, receiving). Pool membership is by machine.pool.
    for (let i = 0; i < n; i++) {
      const m = ms[i]!;
      if (this.idIndex.has(m.id)) continue; // a duplicated machine id keeps its first entry only
      this.idIndex.set(m.id, i);
      if (!MACHINE_FILTERS.every((f) => f.accepts(m))) continue;
      const slots = Math.max(0, Math.floor(m.slots) || 0);
      const capacity = slots > 0 ? slots + Math.max(0, Math.floor(m.queueDepth ?? 0) || 0) : 0;
      const busy = Math.min(capacity, Math.max(0, Math.floor(m.busySlots) || 0));
      this.slots[i] = slots;
      this.capacity[i] = capacity;
      this.busy[i] = busy;
      this.free[i] = capacity - busy;
      this.speed[i] = m.downloadBytesPerSecond > 0 ? m.downloadBytesPerSecond : defaultSpeed;
      let pool = this.pools.get(m.pool);
      if (!pool) {
        pool = {
          members: [],
          slots: 0,
          busy: 0,
          free: 0,
          cursor: 0,
          keyIds: [new Map(), new Map()],
          byLoad: null,
          maxSpeed: 0,
          widespread: 0,
          queue: -1,
        };
        this.pools.set(m.pool, pool);
      }
      pool.members.push(i);
      pool.slots += slots;
      pool.busy += busy;
      pool.free += capacity - busy;
    }
  }

  view(job: PendingJob): JobView {
    const loras = withoutDuplicates(job.loras);
    const n = loras.length;
    let total = 0;
    for (let i = 0; i < n; i++) total += loras[i]!.sizeBytes > 0 ? loras[i]!.sizeBytes : 0;
    const shares = new Array<number>(n);
    const kinds = new Array<Kind>(n);
    for (let i = 0; i < n; i++) {
      const l = loras[i]!;
      shares[i] = total > 0 ? (l.sizeBytes > 0 ? l.sizeBytes : 0) / total : 1 / n;
      kinds[i] = kindOf(l);
    }
    const avoid: number[] = [];
    if (job.avoidMachines) {
      for (const id of job.avoidMachines) {
        const i = this.idIndex.get(id);
        if (i !== undefined && !avoid.includes(i)) avoid.push(i);
      }
    }
    const pool = this.policy === 'fifo' ? undefined : this.pools.get(job.pool);
    const ids = new Array<number>(pool ? n : 0);
    if (pool) for (let i = 0; i < n; i++) ids[i] = this.holders.idOf(pool, kinds[i]!, loras[i]!.key);
    return { job, loras, kinds, shares, avoid, ids };
  }

  cachedOn(m: number, kind: Kind, key: string): boolean {
    const machine = this.ms[m]!;
    return kind === USER ? machine.cachedUser.has(key) : machine.cachedShared.has(key);
  }

  /** Whether LoRA `i` of the job is cached on machine `m` or on its way there (any machine; no candidate masks). */
  holdsAny(v: JobView, m: number, i: number): boolean {
    const kind = v.kinds[i]!;
    const key = v.loras[i]!.key;
    return this.cachedOn(m, kind, key) || this.arriving[kind][m]?.has(key) === true;
  }

  /** Records the choice: takes the slot, notes the LoRAs it sends to the machine, returns the assignment. */
  assign(v: JobView, pool: PoolState, choice: Choice): Assignment {
    const m = choice.machine;
    const hitLoras: string[] = [];
    const missingLoras: string[] = [];
    const arrivingLoras: string[] = [];
    const known = choice.known ?? 0;
    const held = choice.held ?? 0;
    for (let i = 0; i < v.loras.length; i++) {
      const kind = v.kinds[i]!;
      const key = v.loras[i]!.key;
      let set = this.arriving[kind][m];
      const arriving = set !== undefined && set.has(key);
      // An arriving LoRA is not cached there (it is only sent where it is not).
      const cached = (known >> i) & 1 ? !arriving && ((held >> i) & 1) === 1 : this.cachedOn(m, kind, key);
      if (cached) {
        hitLoras.push(key);
        continue;
      }
      missingLoras.push(key);
      if (arriving) {
        arrivingLoras.push(key);
        continue;
      }
      if (!set) set = this.arriving[kind][m] = new Set();
      set.add(key);
      if (v.loras[i]!.sizeBytes > 0) this.incoming[m]! += v.loras[i]!.sizeBytes;
      // Only affinity routes later jobs after LoRAs that are on their way; the baselines see the reported cache only.
      if (this.policy === 'affinity') this.holders.arrive(v.ids[i]!, m);
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
      ...(choice.runnersUp
        ? { runnersUp: choice.runnersUp.map((r) => ({ machineId: this.ms[r.machine]!.id, score: r.score, breakdown: r.breakdown })) }
        : {}),
    };
  }
}

/** The LoRAs without repeats (the job's own list when it has none, as it nearly always does). */
function withoutDuplicates(loras: readonly LoraRef[]): readonly LoraRef[] {
  for (let i = 1; i < loras.length; i++) {
    for (let j = 0; j < i; j++) {
      if (loras[j]!.kind === loras[i]!.kind && loras[j]!.key === loras[i]!.key) {
        const unique: LoraRef[] = [];
        for (const l of loras) if (!unique.some((o) => o.kind === l.kind && o.key === l.key)) unique.push(l);
        return unique;
      }
    }
  }
  return loras;
}

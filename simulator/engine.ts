// The routing simulator's discrete-event engine. It drives the real scheduler core (`schedule()`) and the agent's real
// cache logic (`MemoryLruCache`: planEviction's LRU choice, in-use and pinned protection, TTL sweep, counters) over a
// simulated fleet; it re-implements neither.
//
// Model
// - Jobs arrive (workload.ts) and wait in the pending list. Every `tickMs` the scheduler runs over all pending jobs and
//   all machines (the call is skipped when nothing is pending or no slot is free: its result would be empty).
// - What the scheduler sees of a machine: busy slots exactly (the control plane knows its own assignments and a job's
//   end is reported at once); the cache as of the machine's last heartbeat (every `heartbeatMs`, machines' phases
//   spread evenly over the period), so a LoRA downloaded or evicted since then is not seen yet. heartbeatMs 0 = live.
// - An assigned job takes its slot at once (dispatch and claim take no time) and holds it through its downloads and its
//   run. With a queue depth (`spec.queueDepth`, issue 14) a machine holds up to slots + depth jobs, as the agent does:
//   each starts downloading on arrival, but at most `slots` run at once; a job whose downloads are done waits for a
//   run slot (first downloaded, first run) and takes it when a running job ends. On arrival at the machine, like the agent's `acquire`: the LoRAs it finds (complete or already downloading) are
//   marked in use first; then each missing one gets room (LRU eviction of entries neither in use nor pinned, via
//   MemoryLruCache.add → planEviction; the entry's bytes count against the budget from the start of its download, as
//   the agent's reservation does) and starts downloading. A LoRA already downloading is shared (single-flight).
// - Concurrent downloads on one machine share its bandwidth equally (processor sharing), as the agent's concurrent
//   fetches share its link. The job starts when all its LoRAs are complete; it ends `runMs` later and releases them
//   (which also marks their last use, as the agent does).
// - Entries unused for the TTL (7 days) are swept hourly. No LoRA is pinned in W0–W2 (see docs/simulator.md).
// - Pre-warm hints (`prewarm`, off unless given; prewarm.ts): the timer tick updates the demand per LoRA and chooses
//   hints, each reaches its machine with the next heartbeat, and the machine fetches it while its link is idle.
import {
  schedule,
  scheduleWithOverflow,
  type MachineState,
  type PoolOverflow,
  type PendingJob,
  type SchedulerExtensions,
  type WeightOverrides,
} from '../functions/core/scheduler/index.js';
import { DEFAULT_CACHE_TTL_MS } from '../worker-agent/src/cache/eviction.js';
import { MemoryLruCache } from './memory-cache.js';
import type { EvictionExperiment } from './eviction-orders.js';
import { PrewarmModel, type PrewarmCounters, type PrewarmSimOptions } from './prewarm.js';
import { EventKind, EventQueue } from './events.js';
import { machinePool, type GeneratedWorkload, type SimJobSpec, type SimLora } from './workloads.js';

const HOUR_MS = 60 * 60 * 1000;
/** Simulated time 0 as the scheduler sees it (an integer epoch-ms, so job ages pack exactly). */
export const EPOCH_MS = 1_750_000_000_000;
/** A download with at most this many bytes left is complete (floating-point slack of the bandwidth sharing). */
const DONE_EPSILON_BYTES = 1;

export interface EngineOptions {
  policy: string;
  weights?: WeightOverrides;
  /** Experiment-only scheduler additions (extensions.ts). */
  extensions?: SchedulerExtensions;
  /** Run the built-in invariant checks after every event (throws InvariantError). Costs time; tests turn it on. */
  checkInvariants?: boolean;
  hooks?: EngineHooks;
  /** Pinned cache keys (never evicted). None in the standard workloads. */
  pinned?: readonly string[];
  /** Cross-pool overflow (POOL_OVERFLOW), for workloads with pools: every pass runs through scheduleWithOverflow. */
  overflow?: PoolOverflow;
  /** Predictive pre-warming (issue 14 item 4): hints on with these settings. Absent = off, as the system runs by default. */
  prewarm?: PrewarmSimOptions;
  /** Experiments only: the agents' caches evict in this order instead of LRU (eviction-orders.ts). Absent = LRU. */
  eviction?: EvictionExperiment;
}

/** Read-only view of a machine for hooks. */
export interface MachineView {
  id: string;
  slots: number;
  /** Assigned and not finished (downloading, queued or running). */
  busySlots: number;
  /** Jobs it may hold beyond its slots. */
  queueDepth: number;
  runningJobs: number;
  /** Cached bytes, including the reservations of downloads in flight. */
  usedBytes: number;
  budgetBytes: number;
  /** Whether the LoRA is completely downloaded on the machine. */
  has(key: string): boolean;
}

export interface EngineHooks {
  onAssign?(jobId: string, machine: MachineView, tMs: number): void;
  onStart?(job: SimJobSpec, machine: MachineView, tMs: number): void;
  onEnd?(job: SimJobSpec, machine: MachineView, tMs: number): void;
  /** After every event, with every machine. */
  afterEvent?(tMs: number, machines: readonly MachineView[]): void;
}

export class InvariantError extends Error {
  override name = 'InvariantError';
}

/** Raw results of one run; metrics.ts turns them into figures. */
export interface RunRecord {
  policy: string;
  weights?: WeightOverrides;
  extensions?: SchedulerExtensions;
  jobs: number;
  arrivalMs: Float64Array;
  assignedMs: Float64Array;
  startMs: Float64Array;
  endMs: Float64Array;
  machineOf: Int32Array;
  /** Times each job started (must be 1). */
  starts: Uint8Array;
  /** All of the job's LoRAs were complete on the machine when it got there. */
  fullHit: Uint8Array;
  /** At least one of the job's LoRAs was in the chosen machine's reported cache (ADR-010 score > 0). */
  adrScored: Uint8Array;
  /** The policy's own score for the chosen machine was > 0. */
  policyScored: Uint8Array;
  loraRequests: number;
  /** Complete on the machine when the job got there. */
  loraHits: number;
  /** Already downloading there for another job (no new download, but a wait). */
  loraJoined: number;
  /** Downloaded for this job. */
  loraMisses: number;
  machines: {
    id: string;
    slots: number;
    jobs: number;
    /** Slot-time held by jobs (assignment → end, downloads included). */
    busyMs: number;
    downloads: number;
    bytesDownloaded: number;
    evictions: number;
    thrash: number;
    peakUsedBytes: number;
  }[];
  schedulerCalls: number;
  /** Simulated ms at which the last job ended. */
  endMs_: number;
  /** Wall-clock ms spent inside schedule() (not deterministic; excluded from the metrics). */
  schedulerWallMs: number;
  /** Jobs placed outside their own pool by cross-pool overflow. */
  overflowed: number;
  /** Pre-warm hints and fetches, when `prewarm` was on (their bytes are in the machines' bytesDownloaded). */
  prewarm?: PrewarmCounters;
}

interface Download {
  lora: SimLora;
  remaining: number;
  waiters: number[];
  /** A pre-warm fetch: its own in-use mark is released when it completes. */
  prefetch?: boolean;
}

class SimMachine implements MachineView {
  readonly cache: MemoryLruCache;
  /** Completely downloaded keys (the live cache). */
  readonly completeUser = new Set<string>();
  readonly completeShared = new Set<string>();
  /** What the last heartbeat reported. */
  readonly reportedUser: Set<string>;
  readonly reportedShared: Set<string>;
  /** Cache changes not reported yet: [time, added?, lora]. */
  private readonly changes: { t: number; add: boolean; lora: SimLora }[] = [];
  private changeHead = 0;
  readonly inFlight = new Map<string, Download>();
  readonly active: Download[] = [];
  private lastAdvanceMs = 0;
  dlVersion = 0;
  busySlots = 0;
  /** Downloaded jobs waiting for a run slot, in the order their downloads finished. */
  readonly ready: number[] = [];
  private readyHead = 0;
  runningJobs = 0;
  jobs = 0;
  busyMs = 0;
  peakUsedBytes = 0;
  /** Assignment instants (scheduler epoch ms) of the jobs holding slots: MachineState.busySinceMs. */
  readonly busySince: number[] = [];
  /** Their expected run times (seconds), in the same order: MachineState.busyRunSeconds. */
  readonly busyRun: number[] = [];
  readonly state: MachineState;

  constructor(
    readonly index: number,
    readonly id: string,
    readonly slots: number,
    readonly queueDepth: number,
    readonly budgetBytes: number,
    readonly bandwidth: number,
    /** Heartbeat period; 0 = the scheduler sees the live cache. */
    private readonly heartbeatMs: number,
    /** This machine's first heartbeat. */
    private readonly phaseMs: number,
    pinned: readonly string[],
    pool: string,
    /** Experiments only: another eviction order than the agent's LRU, and the fleet's copy counts it may read. */
    eviction?: EvictionExperiment,
    private readonly fleetCopies: Map<string, number> = new Map(),
  ) {
    this.cache = new MemoryLruCache({
      budgetBytes,
      pinned,
      clock: () => 0,
      ...(eviction ? { eviction, fleetCopies } : {}),
    });
    const live = heartbeatMs === 0;
    this.reportedUser = live ? this.completeUser : new Set();
    this.reportedShared = live ? this.completeShared : new Set();
    this.state = {
      id,
      pool,
      slots,
      ...(queueDepth > 0 ? { queueDepth } : {}),
      busySlots: 0,
      live: true,
      draining: false,
      cachedUser: this.reportedUser,
      cachedShared: this.reportedShared,
      budgetBytes,
      usedBytes: 0,
      downloadBytesPerSecond: bandwidth,
      busySinceMs: this.busySince,
      busyRunSeconds: this.busyRun,
    };
  }

  get usedBytes(): number {
    return this.cache.usedBytes;
  }

  get readyCount(): number {
    return this.ready.length - this.readyHead;
  }

  pushReady(j: number): void {
    this.ready.push(j);
  }

  shiftReady(): number | undefined {
    if (this.readyHead === this.ready.length) return undefined;
    const j = this.ready[this.readyHead++]!;
    if (this.readyHead === this.ready.length) {
      this.ready.length = 0;
      this.readyHead = 0;
    }
    return j;
  }

  has(key: string): boolean {
    return this.completeUser.has(key) || this.completeShared.has(key);
  }

  isComplete(l: SimLora): boolean {
    return (l.kind === 'user' ? this.completeUser : this.completeShared).has(l.key);
  }

  setComplete(l: SimLora, present: boolean, tMs: number): void {
    const set = l.kind === 'user' ? this.completeUser : this.completeShared;
    if (present) {
      if (!set.has(l.key)) this.fleetCopies.set(l.key, (this.fleetCopies.get(l.key) ?? 0) + 1);
      set.add(l.key);
    } else if (set.delete(l.key)) this.fleetCopies.set(l.key, (this.fleetCopies.get(l.key) ?? 1) - 1);
    if (this.heartbeatMs > 0) this.changes.push({ t: tMs, add: present, lora: l });
  }

  /** Brings the reported cache up to the last heartbeat at or before `tMs`. */
  syncReport(tMs: number): void {
    this.state.busySlots = this.busySlots;
    this.state.usedBytes = this.cache.usedBytes;
    if (this.heartbeatMs === 0 || tMs < this.phaseMs) return;
    const lastBeat = this.phaseMs + Math.floor((tMs - this.phaseMs) / this.heartbeatMs) * this.heartbeatMs;
    const changes = this.changes;
    let i = this.changeHead;
    while (i < changes.length && changes[i]!.t <= lastBeat) {
      const c = changes[i]!;
      const set = c.lora.kind === 'user' ? this.reportedUser : this.reportedShared;
      if (c.add) set.add(c.lora.key);
      else set.delete(c.lora.key);
      i++;
    }
    if (i === changes.length) {
      changes.length = 0;
      i = 0;
    } else if (i > 4096) {
      changes.splice(0, i);
      i = 0;
    }
    this.changeHead = i;
  }

  /**
   * The downloads sharing the link now: all of them, except that a pre-warm fetch no job waits for yields to job
   * downloads (the agent aborts it when a job arrives and resumes it from its partial file once the link is idle).
   */
  private sharing(): Download[] {
    let yields = false;
    for (const d of this.active) if (d.prefetch && d.waiters.length === 0) yields = true;
    if (!yields) return this.active;
    const jobs = this.active.filter((d) => !d.prefetch || d.waiters.length > 0);
    return jobs.length > 0 ? jobs : this.active;
  }

  /** Progress of the downloads in flight up to `tMs` (equal shares of the bandwidth). */
  advance(tMs: number): void {
    const run = this.sharing();
    const n = run.length;
    if (n > 0 && tMs > this.lastAdvanceMs) {
      const each = (this.bandwidth * (tMs - this.lastAdvanceMs)) / 1000 / n;
      for (const d of run) d.remaining -= each;
    }
    this.lastAdvanceMs = tMs;
  }

  /** When the first download in flight will finish at the current sharing, or undefined. */
  nextDoneMs(tMs: number): number | undefined {
    const run = this.sharing();
    const n = run.length;
    if (n === 0) return undefined;
    let min = Infinity;
    for (const d of run) if (d.remaining < min) min = d.remaining;
    const t = tMs + (Math.max(0, min) * n * 1000) / this.bandwidth;
    // At very high speeds the remainder can round to no time at all: step 1 µs, which completes it (see takeDone).
    return t > tMs ? t : tMs + 1e-3;
  }

  takeDone(): Download[] {
    const done: Download[] = [];
    // Slack: 1 byte, or what the link moves in 1 µs (floating-point error of the shared-bandwidth bookkeeping).
    const epsilon = Math.max(DONE_EPSILON_BYTES, this.bandwidth * 1e-6);
    let w = 0;
    for (const d of this.active) {
      if (d.remaining <= epsilon) done.push(d);
      else this.active[w++] = d;
    }
    this.active.length = w;
    return done;
  }
}

/** Runs one policy over a generated workload. Deterministic: the same workload and options give the same record. */
export function simulate(workload: GeneratedWorkload, options: EngineOptions): RunRecord {
  const { spec, jobs } = workload;
  const n = jobs.length;
  const hooks = options.hooks;
  const check = options.checkInvariants === true;
  const machines: SimMachine[] = [];
  const fleetCopies = new Map<string, number>();
  for (let i = 0; i < spec.machines; i++) {
    const phase = spec.heartbeatMs > 0 ? (i * spec.heartbeatMs) / spec.machines : 0;
    machines.push(
      new SimMachine(
        i,
        `gpu-${String(i).padStart(3, '0')}`,
        spec.slotsPerMachine,
        spec.queueDepth ?? 0,
        spec.cacheBudgetBytes,
        spec.downloadBytesPerSecondMax !== undefined && spec.machines > 1
          ? spec.downloadBytesPerSecond + ((spec.downloadBytesPerSecondMax - spec.downloadBytesPerSecond) * i) / (spec.machines - 1)
          : spec.downloadBytesPerSecond,
        spec.heartbeatMs,
        phase,
        options.pinned ?? [],
        machinePool(spec, i),
        options.eviction,
        fleetCopies,
      ),
    );
  }
  const machineById = new Map(machines.map((m) => [m.id, m]));
  const states = machines.map((m) => m.state);
  const totalSlots = spec.machines * (spec.slotsPerMachine + (spec.queueDepth ?? 0));

  const rec: RunRecord = {
    policy: options.policy,
    ...(options.weights ? { weights: options.weights } : {}),
    ...(options.extensions ? { extensions: options.extensions } : {}),
    jobs: n,
    arrivalMs: new Float64Array(n),
    assignedMs: new Float64Array(n).fill(NaN),
    startMs: new Float64Array(n).fill(NaN),
    endMs: new Float64Array(n).fill(NaN),
    machineOf: new Int32Array(n).fill(-1),
    starts: new Uint8Array(n),
    fullHit: new Uint8Array(n),
    adrScored: new Uint8Array(n),
    policyScored: new Uint8Array(n),
    loraRequests: 0,
    loraHits: 0,
    loraJoined: 0,
    loraMisses: 0,
    machines: [],
    schedulerCalls: 0,
    endMs_: 0,
    schedulerWallMs: 0,
    overflowed: 0,
  };
  const waiting = new Int32Array(n);

  const queue = new EventQueue();
  let pending: PendingJob[] = [];
  /** Pending jobs per pool, for the overflow's wait estimate (intake's pass sees one job, the pool has more). */
  const pendingByPool = new Map<string, number>();
  const pendingIndex = new Map<string, number>();
  let nextArrival = 0;
  let busyTotal = 0;
  let now = 0;

  const fail = (message: string): never => {
    throw new InvariantError(`t=${(now / 1000).toFixed(3)} s, policy ${options.policy}: ${message}`);
  };

  const loraByKey = new Map(workload.loras.map((l) => [l.key, l]));
  const pre = options.prewarm
    ? new PrewarmModel(
        machines.map((m) => ({
          index: m.index,
          id: m.id,
          slots: m.slots,
          budgetBytes: m.budgetBytes,
          cache: m.cache,
          reportedUser: m.reportedUser,
          reportedShared: m.reportedShared,
          has: (key: string) => m.has(key),
          downloading: (key: string) => m.inFlight.has(key),
          activeDownloads: () => m.active.length,
        })),
        loraByKey,
        options.prewarm,
      )
    : undefined;
  /** The machine's next heartbeat at or after `tMs` (phases as in the SimMachine constructor). */
  const nextBeatMs = (i: number, tMs: number): number => {
    if (spec.heartbeatMs <= 0) return tMs;
    const phase = (i * spec.heartbeatMs) / spec.machines;
    return tMs <= phase ? phase : phase + Math.ceil((tMs - phase) / spec.heartbeatMs) * spec.heartbeatMs;
  };
  /** The agent fetches its next hint while no download is in flight on its link (prewarm.ts decides which). */
  const tryPrefetch = (m: SimMachine, tMs: number): void => {
    const next = pre?.nextFetch(m.index, tMs);
    if (!next) return;
    const l = next.lora;
    m.advance(tMs);
    const added = m.cache.add(l.key, l.sizeBytes, tMs);
    if ('error' in added) return fail(`${m.id} cannot make room for hint ${l.key}: ${added.error}`);
    for (const k of added.evicted) evicted(m, k, tMs);
    m.cache.markInUse(l.key);
    const d: Download = { lora: l, remaining: l.sizeBytes, waiters: [], prefetch: true };
    m.inFlight.set(l.key, d);
    m.active.push(d);
    if (m.cache.usedBytes > m.peakUsedBytes) m.peakUsedBytes = m.cache.usedBytes;
    queue.push(m.nextDoneMs(tMs)!, EventKind.DownloadDone, m.index, ++m.dlVersion);
  };
  const evicted = (m: SimMachine, key: string, tMs: number): void => {
    if (m.inFlight.has(key)) fail(`${m.id} evicted ${key} while it was downloading`);
    const lora = loraByKey.get(key);
    if (!lora) return fail(`${m.id} evicted unknown key ${key}`);
    m.setComplete(lora, false, tMs);
  };

  /** The job's LoRAs are all complete on `m`: it runs now if a run slot is free, else waits for one (the agent's gate). */
  const ready = (j: number, m: SimMachine, tMs: number): void => {
    if (m.runningJobs < m.slots) startJob(j, m, tMs);
    else m.pushReady(j);
  };

  const startJob = (j: number, m: SimMachine, tMs: number): void => {
    const job = jobs[j]!;
    for (const l of job.loras) {
      if (!m.isComplete(l)) fail(`${job.id} started on ${m.id} without ${l.key}`);
    }
    if (rec.starts[j]! > 0) fail(`${job.id} started twice`);
    m.runningJobs++;
    if (m.runningJobs > m.slots) fail(`${m.id} runs ${m.runningJobs} jobs on ${m.slots} slots`);
    rec.starts[j]!++;
    rec.startMs[j] = tMs;
    queue.push(tMs + job.runMs, EventKind.JobEnd, j);
    hooks?.onStart?.(job, m, tMs);
  };

  // What the tick tells the scheduler a busy job will run: its service's mean (learned per service_required), or the
  // fleet's (runTimeEstimate 'fleet').
  const expectedRunSeconds = (job: SimJobSpec): number =>
    spec.runTimeEstimate === 'fleet' ? workload.meanRunSeconds : (workload.serviceRunSeconds[job.service] ?? workload.meanRunSeconds);

  const assign = (j: number, m: SimMachine, tMs: number, hitReported: number, score: number): void => {
    const job = jobs[j]!;
    if (rec.machineOf[j] !== -1) fail(`${job.id} assigned twice`);
    m.busySlots++;
    busyTotal++;
    if (m.busySlots > m.slots + m.queueDepth) fail(`${m.id} assigned ${m.busySlots} jobs on ${m.slots} slots + ${m.queueDepth} queued`);
    m.state.busySlots = m.busySlots;
    m.busySince.push(EPOCH_MS + tMs);
    m.busyRun.push(expectedRunSeconds(job));
    m.jobs++;
    rec.machineOf[j] = m.index;
    rec.assignedMs[j] = tMs;
    if (hitReported > 0) rec.adrScored[j] = 1;
    if (score > 0) rec.policyScored[j] = 1;
    hooks?.onAssign?.(job.id, m, tMs);

    // Like the agent's acquire(): first protect what is there (complete or arriving), then make room for the rest.
    const missing: SimLora[] = [];
    let hits = 0;
    let replan = false;
    for (const l of job.loras) {
      rec.loraRequests++;
      if (m.isComplete(l)) {
        rec.loraHits++;
        hits++;
        m.cache.touch(l.key, tMs);
        m.cache.markInUse(l.key);
        continue;
      }
      const d = m.inFlight.get(l.key);
      if (d) {
        rec.loraJoined++;
        m.cache.markInUse(l.key);
        // A job joining a yielding pre-warm fetch makes it a job download again: the sharing changes now.
        if (d.prefetch && d.waiters.length === 0) {
          m.advance(tMs);
          replan = true;
        }
        d.waiters.push(j);
        waiting[j]!++;
        continue;
      }
      missing.push(l);
    }
    if (hits === job.loras.length) rec.fullHit[j] = 1;
    if (missing.length > 0) {
      m.advance(tMs);
      for (const l of missing) {
        rec.loraMisses++;
        const added = m.cache.add(l.key, l.sizeBytes, tMs);
        if ('error' in added) return fail(`${m.id} cannot make room for ${l.key}: ${added.error}`);
        for (const k of added.evicted) evicted(m, k, tMs);
        m.cache.markInUse(l.key);
        const d: Download = { lora: l, remaining: l.sizeBytes, waiters: [j] };
        m.inFlight.set(l.key, d);
        m.active.push(d);
        waiting[j]!++;
      }
      if (m.cache.usedBytes > m.peakUsedBytes) m.peakUsedBytes = m.cache.usedBytes;
      replan = true;
    }
    if (replan) {
      const done = m.nextDoneMs(tMs);
      if (done !== undefined) queue.push(done, EventKind.DownloadDone, m.index, ++m.dlVersion);
    }
    if (waiting[j] === 0) ready(j, m, tMs);
  };

  /** One scheduler pass over `jobs` (all pending by default) and all machines, as the timer and the event paths run it. */
  const place = (tMs: number, jobs_: PendingJob[] = pending): void => {
    if (jobs_.length > 0 && busyTotal < totalSlots) {
      for (const m of machines) m.syncReport(tMs);
      const t0 = performance.now();
      const input = {
        nowMs: EPOCH_MS + tMs,
        jobs: jobs_,
        machines: states,
        policy: options.policy,
        ...(options.weights ? { weights: options.weights } : {}),
        expectedJobSeconds: workload.meanRunSeconds,
        defaultDownloadBytesPerSecond: spec.downloadBytesPerSecond,
      };
      const result = options.overflow
        ? scheduleWithOverflow(input, options.overflow, pendingByPool, options.extensions)
        : schedule(input, options.extensions);
      rec.schedulerWallMs += performance.now() - t0;
      rec.schedulerCalls++;
      if (result.assignments.length > 0) {
        for (const a of result.assignments) {
          const j = pendingIndex.get(a.jobId);
          const m = machineById.get(a.machineId);
          if (j === undefined || m === undefined) return fail(`unknown assignment ${a.jobId} → ${a.machineId}`);
          pendingIndex.delete(a.jobId);
          const pool = jobs[j]!.pool ?? 'default';
          pendingByPool.set(pool, pendingByPool.get(pool)! - 1);
          if (a.overflow) rec.overflowed++;
          assign(j, m, tMs, a.hitLoras.length, a.score);
        }
        pending = pending.filter((p) => pendingIndex.has(p.id));
      }
    }
  };

  const tick = (tMs: number): void => {
    place(tMs);
    if (pre) for (const [i, l] of pre.tick(tMs, EPOCH_MS, workload.meanRunSeconds)) queue.push(nextBeatMs(i, tMs), EventKind.Hint, i, l.index);
    if (nextArrival < n || pending.length > 0) queue.push(tMs + spec.tickMs, EventKind.Tick);
  };
  const onEvents = spec.placement === 'events';

  const checkAll = (): void => {
    let busy = 0;
    for (const m of machines) {
      busy += m.busySlots;
      if (m.busySlots > m.slots + m.queueDepth) fail(`${m.id} has ${m.busySlots} busy slots of ${m.slots} + ${m.queueDepth}`);
      if (m.runningJobs > m.slots) fail(`${m.id} runs ${m.runningJobs} jobs on ${m.slots} slots`);
      if (m.readyCount > 0 && m.runningJobs < m.slots) fail(`${m.id} has a free run slot and ${m.readyCount} ready jobs waiting`);
      if (m.runningJobs > m.busySlots) fail(`${m.id} runs ${m.runningJobs} jobs but has ${m.busySlots} assigned`);
      if (m.busySince.length !== m.busySlots || m.busyRun.length !== m.busySlots) {
        fail(`${m.id} has ${m.busySlots} busy slots but ${m.busySince.length} busy-since and ${m.busyRun.length} run-time entries`);
      }
      if (m.cache.usedBytes > m.budgetBytes) fail(`${m.id} caches ${m.cache.usedBytes} B over its budget`);
      let sum = 0;
      for (const e of m.cache.snapshot()) {
        sum += e.sizeBytes;
        const complete = m.has(e.key);
        const downloading = m.inFlight.has(e.key);
        if (complete === downloading) fail(`${m.id} entry ${e.key} complete=${complete} downloading=${downloading}`);
      }
      if (sum !== m.cache.usedBytes) fail(`${m.id} entries sum to ${sum} B, cache says ${m.cache.usedBytes} B`);
      if (m.completeUser.size + m.completeShared.size + m.inFlight.size !== m.cache.size) {
        fail(`${m.id} cache has ${m.cache.size} entries, model has ${m.completeUser.size + m.completeShared.size} + ${m.inFlight.size}`);
      }
    }
    if (busy !== busyTotal) fail(`busy slots ${busy} ≠ tally ${busyTotal}`);
  };

  for (let j = 0; j < n; j++) rec.arrivalMs[j] = jobs[j]!.arrivalMs;
  if (n > 0) queue.push(jobs[0]!.arrivalMs, EventKind.Arrival, 0);
  queue.push(spec.tickMs, EventKind.Tick);
  queue.push(HOUR_MS, EventKind.TtlSweep);

  for (let e = queue.pop(); e !== undefined; e = queue.pop()) {
    now = e.t;
    switch (e.kind) {
      case EventKind.Arrival: {
        const job = jobs[e.a]!;
        pending.push({
          id: job.id,
          tenantId: 'sim',
          pool: job.pool ?? 'default',
          priority: 5,
          createdAtMs: EPOCH_MS + Math.floor(job.arrivalMs),
          attempt: 1,
          loras: job.loras.map((l) => l.ref),
        });
        pendingIndex.set(job.id, e.a);
        pendingByPool.set(job.pool ?? 'default', (pendingByPool.get(job.pool ?? 'default') ?? 0) + 1);
        pre?.arrived({ id: job.id, pool: job.pool ?? 'default', createdAtMs: EPOCH_MS + Math.floor(job.arrivalMs), loras: job.loras.map((l) => l.ref) });
        nextArrival = e.a + 1;
        // Placement on events: intake tries to place the new job at once (a pass over it alone).
        if (onEvents) place(e.t, [pending[pending.length - 1]!]);
        if (nextArrival < n) queue.push(jobs[nextArrival]!.arrivalMs, EventKind.Arrival, nextArrival);
        break;
      }
      case EventKind.Tick:
        tick(e.t);
        break;
      case EventKind.DownloadDone: {
        const m = machines[e.a]!;
        if (e.b !== m.dlVersion) break; // superseded by a later plan
        m.advance(e.t);
        for (const d of m.takeDone()) {
          m.inFlight.delete(d.lora.key);
          m.setComplete(d.lora, true, e.t);
          if (d.prefetch) m.cache.release(d.lora.key, e.t);
          for (const j of d.waiters) {
            if (--waiting[j]! === 0) ready(j, m, e.t);
          }
        }
        const done = m.nextDoneMs(e.t);
        if (done !== undefined) queue.push(done, EventKind.DownloadDone, m.index, ++m.dlVersion);
        else tryPrefetch(m, e.t);
        break;
      }
      case EventKind.Hint: {
        pre!.deliver(e.a, workload.loras[e.b]!, e.t);
        tryPrefetch(machines[e.a]!, e.t);
        break;
      }
      case EventKind.JobEnd: {
        const j = e.a;
        const job = jobs[j]!;
        const m = machines[rec.machineOf[j]!]!;
        m.runningJobs--;
        m.busySlots--;
        m.state.busySlots = m.busySlots;
        const since = m.busySince.indexOf(EPOCH_MS + rec.assignedMs[j]!);
        if (since < 0) fail(`${job.id} ended on ${m.id} without a busy-since entry`);
        m.busySince.splice(since, 1);
        m.busyRun.splice(since, 1);
        busyTotal--;
        m.busyMs += e.t - rec.assignedMs[j]!;
        for (const l of job.loras) m.cache.release(l.key, e.t);
        rec.endMs[j] = e.t;
        if (e.t > rec.endMs_) rec.endMs_ = e.t;
        hooks?.onEnd?.(job, m, e.t);
        // The freed run slot goes to the first queued job whose downloads are done (the agent's RunSlots).
        const next = m.shiftReady();
        if (next !== undefined) startJob(next, m, e.t);
        // Placement on events: a finished job frees a slot, so a pass over all pending jobs runs now.
        if (onEvents) place(e.t);
        break;
      }
      case EventKind.TtlSweep: {
        for (const m of machines) {
          for (const k of m.cache.sweepTtl(e.t, DEFAULT_CACHE_TTL_MS)) evicted(m, k, e.t);
        }
        if (nextArrival < n || pending.length > 0 || busyTotal > 0) queue.push(e.t + HOUR_MS, EventKind.TtlSweep);
        break;
      }
    }
    if (check) checkAll();
    hooks?.afterEvent?.(e.t, machines);
  }

  if (pending.length > 0 || busyTotal > 0) fail(`run ended with ${pending.length} pending and ${busyTotal} busy slots`);
  rec.machines = machines.map((m) => ({
    id: m.id,
    slots: m.slots,
    jobs: m.jobs,
    busyMs: m.busyMs,
    downloads: m.cache.counters.downloads,
    bytesDownloaded: m.cache.counters.bytes_downloaded,
    evictions: m.cache.counters.evictions,
    thrash: m.cache.counters.thrash,
    peakUsedBytes: m.peakUsedBytes,
  }));
  if (pre) rec.prewarm = { ...pre.counters };
  return rec;
}

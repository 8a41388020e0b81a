// Inputs and outputs of the scheduler core. Plain data only: the scheduler does no I/O and reads no clock, so the timer
// function, the simulator and the benchmark can all feed it the same shapes.
import type { Weights } from './weights.js';

/** Weights by name; names of scorers an experiment registers (`SchedulerExtensions.scorers`) are accepted too. */
export type WeightOverrides = Partial<Weights> & Readonly<Record<string, number | undefined>>;

/** One LoRA a job needs. `key` is the flat_file_id (user LoRA) or the file name (shared LoRA): the machine's cache key. */
export interface LoraRef {
  kind: 'user' | 'shared';
  key: string;
  /** Size of the file; used to estimate download time and to weight multi-LoRA jobs. 0 if unknown. */
  sizeBytes: number;
}

/** A job waiting for a machine. */
export interface PendingJob {
  id: string;
  tenantId: string;
  pool: string;
  /** 0-9, higher goes first. */
  priority: number;
  createdAtMs: number;
  /** Retry backoff: the job is not routed before this instant. */
  notBeforeMs?: number;
  /** 1 for the first attempt. Informational: routing does not depend on it. */
  attempt: number;
  loras: LoraRef[];
  /** Machines on which an earlier attempt of this job was lost; the affinity policy avoids them if it can. */
  avoidMachines?: string[];
}

/** A GPU machine as the last heartbeat described it, plus the jobs already handed to it. */
export interface MachineState {
  id: string;
  pool: string;
  slots: number;
  /**
   * Dispatches the agent accepts beyond its slots (issue 14, downloads that overlap GPU work): it downloads their LoRAs
   * while its slots are busy and runs each as a slot frees. The pass may give the machine up to `slots + queueDepth`
   * jobs. Absent or 0 = none (a job is only sent to a free slot).
   */
  queueDepth?: number;
  /** Running + assigned-not-finished jobs (at most `slots + queueDepth`). */
  busySlots: number;
  live: boolean;
  draining: boolean;
  /** False when the agent's heartbeat says it cannot receive dispatches (filters/receiving.ts). Absent = receiving. */
  receiving?: boolean;
  /** False while an admin drained the machine or its agent reports it unhealthy (filters/accepts-work.ts). Absent = accepts. */
  acceptsWork?: boolean;
  /** flat_file_ids of the user LoRAs in the machine's cache. */
  cachedUser: ReadonlySet<string>;
  /** File names of the shared LoRAs in the machine's cache. */
  cachedShared: ReadonlySet<string>;
  budgetBytes: number;
  usedBytes: number;
  /** Measured download speed; 0 = unknown, the scheduler then uses `SchedulerInput.defaultDownloadBytesPerSecond`. */
  downloadBytesPerSecond: number;
  /**
   * Optional: when each job holding a slot was assigned (epoch ms), one entry per busy slot, any order (with a queue,
   * the `slots` smallest residuals are taken as the running jobs, the rest as queued behind them). Used by the
   * affinity policy's delay rule (`delay` weight) to estimate when the machine frees a slot; without it the estimate is
   * `expectedJobSeconds / slots` per slot. The control plane knows these instants (the jobs' assignment times).
   */
  busySinceMs?: readonly number[];
  /**
   * Optional, parallel to `busySinceMs`: each busy job's expected run time in seconds (the control plane learns it per
   * `service_required`). Absent: every busy job is expected to run `SchedulerInput.expectedJobSeconds`.
   */
  busyRunSeconds?: readonly number[];
}

export interface SchedulerInput {
  /** The instant of this pass (ms since epoch); compared with `PendingJob.notBeforeMs`. */
  nowMs: number;
  jobs: readonly PendingJob[];
  /** Input order matters: it is the tie-break order, and `fifo` takes the first machine that fits. */
  machines: readonly MachineState[];
  /** One of `policyNames`. */
  policy: string;
  /** Overrides of `DEFAULT_WEIGHTS` by name (validated by `resolveWeights`). */
  weights?: WeightOverrides;
  /** Typical job run time, for the load scorer. Default `DEFAULT_EXPECTED_JOB_SECONDS`. */
  expectedJobSeconds?: number;
  /** Used for machines that report no download speed. Default `DEFAULT_DOWNLOAD_BYTES_PER_SECOND`. */
  defaultDownloadBytesPerSecond?: number;
  /**
   * How many runners-up each assignment keeps (`Assignment.runnersUp`, for `job --explain`). Default 0: the simulator
   * and the benchmark pay nothing; the control plane asks for `RUNNERS_UP` (3).
   */
  runnersUp?: number;
}

/** A machine that scored below the chosen one for the same job, in the same pass. */
export interface RunnerUp {
  machineId: string;
  score: number;
  breakdown: Record<string, number>;
}

export interface Assignment {
  jobId: string;
  machineId: string;
  /** Sum of `breakdown`. */
  score: number;
  /** Weighted value of each scorer, by name (penalties are negative). */
  breakdown: Record<string, number>;
  /** Keys of the job's LoRAs already in the machine's cache. */
  hitLoras: string[];
  /** Keys the machine does not hold yet (includes `arrivingLoras`). */
  missingLoras: string[];
  /** Missing keys that an earlier assignment of this same pass already brings to the machine. */
  arrivingLoras: string[];
  policy: string;
  /**
   * With `SchedulerInput.runnersUp` > 0 and a scoring policy (affinity, adr010): the best-scoring other machines with a
   * free slot, best first, with their breakdowns. Exact for affinity (its walk then prunes against the last runner-up
   * instead of the pick, scoring up to `runnersUp` more machines per job); adr010 lists the other machines holding some
   * of the job's LoRAs (all others score 0).
   */
  runnersUp?: RunnerUp[];
  /** Set when the job was placed outside its own pool by cross-pool overflow (overflow.ts): where from, and why. */
  overflow?: OverflowNote;
}

/** Why a job ran outside its pool (overflow.ts): its pool's expected wait was over the threshold, the target's was not. */
export interface OverflowNote {
  fromPool: string;
  toPool: string;
  /** null: no machine that may take work serves the job's pool. */
  fromWaitSeconds: number | null;
  toWaitSeconds: number;
  thresholdSeconds: number;
}

export type UnassignedReason =
  /** No machine of the job's pool passes the machine filters (live, not draining, receiving, accepts work). */
  | 'no_machine_in_pool'
  /** The pool has machines, but no free slot was left for this job in this pass. */
  | 'no_capacity'
  /** Still in retry backoff (`notBeforeMs > nowMs`). */
  | 'not_before'
  /** affinity with `delay` > 0: held back one pass for a busy machine that holds its LoRAs. */
  | 'delayed';

export interface ScheduleResult {
  /** In routing order (priority, then age, then id). */
  assignments: Assignment[];
  /** `machineId`: for `delayed`, the busy machine holding the job's LoRAs that the job waits for. */
  unassigned: { jobId: string; reason: UnassignedReason; machineId?: string }[];
}

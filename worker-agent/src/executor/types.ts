// The seam between the agent and whatever actually runs a job on the GPU. The agent prepares a run (LoRAs in the
// cache, a private run directory), starts an Execution and only ever sees lines, progress and one outcome.
// Implementations: `command` (a child process, ./command.ts) and `comfyui` (a local ComfyUI server over its HTTP +
// WebSocket API, ./comfyui.ts).

/** One LoRA of the job as it sits in the local cache. */
export interface ExecutorLora {
  kind: 'user' | 'shared';
  /** flat_file_id for user LoRAs, filename for shared ones. */
  key: string;
  /** Absolute path of the verified file in the cache (read-only for the job). */
  path: string;
  sha256: string;
  size_bytes: number;
}

export interface ExecutorJob {
  jobId: string;
  epoch: number;
  attempt: number;
  serviceRequired: string;
  payload: Record<string, unknown>;
  loras: ExecutorLora[];
  /** A directory private to this run; the executor may write anything below it. Removed after the run. */
  runDir: string;
  /**
   * `<runDir>/output`, created empty: every file left here when the execution succeeds is uploaded as a job output
   * (`result.json` aside: it is the job's result). Sub-folders are flattened with '_'.
   */
  outputDir: string;
}

/** Where an execution reports while it runs. Calls are cheap and never throw; the agent batches and ships them. */
export interface ExecutionSink {
  log(stream: 'stdout' | 'stderr', line: string): void;
  /** fraction in [0, 1]. */
  progress(fraction: number, message?: string): void;
}

export type ExecutionOutcome =
  | { status: 'succeeded'; result?: unknown }
  /**
   * retryable: whether another attempt (possibly on another machine) could succeed. false for the job's own
   * failure (non-zero exit); true for trouble around it (could not start the program, killed by a signal).
   */
  | {
      status: 'failed';
      reason: string;
      retryable: boolean;
      exitCode?: number | null;
      signal?: string | null;
      /**
       * The machine, not the job, failed (the program is missing, the disk is full, the executor's backend is down):
       * the job is handed back without spending an attempt and the machine reports itself unhealthy.
       */
      infrastructure?: boolean;
      /**
       * The executor's backend went away during the run (ComfyUI died or restarted under it). The attempt is spent —
       * the job may be what killed it — but the machine reports itself unhealthy before the failure is reported, so the
       * retry is not placed back on a machine that cannot run it.
       */
      backendLost?: boolean;
    }
  /** Stopped because cancel() was called; `reason` is what cancel() was given. */
  | { status: 'cancelled'; reason: string; forced: boolean };

export interface Execution {
  /** Settles once, after the job's processes are gone; never rejects. */
  readonly done: Promise<ExecutionOutcome>;
  /** Asks the job to stop (graceful first, forced after the executor's grace period). Idempotent. */
  cancel(reason: string): void;
}

export interface Executor {
  readonly kind: string;
  start(job: ExecutorJob, sink: ExecutionSink): Execution;
  /** Why this executor cannot run jobs right now (program missing, backend down), or null when it can. Cheap. */
  preflight?(): string | null;
}

/** Lines longer than this are cut (the events API accepts up to 8192 characters per line). */
export const MAX_LINE_CHARS = 8000;

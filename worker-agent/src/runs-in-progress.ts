// The runs the agent holds, from dispatch received to settled (claiming, preparing, waiting for a slot, running,
// reporting): what the heartbeat reports as running, what `stop_jobs` and shutdown cancel, what the drain waits for.
import { SHUTDOWN_REASON, type JobRun } from './job-run.js';

export class RunsInProgress {
  private readonly runs = new Set<JobRun>();
  private readonly settling = new Set<Promise<void>>();

  get size(): number {
    return this.runs.size;
  }

  /**
   * Holds `run` from now until `execute()` has settled, then drops it and calls `afterwards` (so a wait for a free
   * slot woken there sees the slot free).
   */
  hold(run: JobRun, execute: () => Promise<void>, afterwards: () => void): void {
    this.runs.add(run);
    const p = execute().finally(() => {
      this.runs.delete(run);
      this.settling.delete(p);
      afterwards();
    });
    this.settling.add(p);
  }

  /** The runs not yet done, as the heartbeat reports them (one entry per job and epoch, at most 64). */
  jobs(): { job_id: string; epoch: number }[] {
    const seen = new Map<string, { job_id: string; epoch: number }>();
    for (const r of this.runs) if (r.phase !== 'done') seen.set(`${r.jobId}:${r.epoch}`, { job_id: r.jobId, epoch: r.epoch });
    return [...seen.values()].slice(0, 64);
  }

  /** Whether another run (a redelivered copy) holds the same job and epoch and is not done. */
  isRunningElsewhere(r: JobRun): boolean {
    return [...this.runs].some((o) => o !== r && o.jobId === r.jobId && o.epoch === r.epoch && o.phase !== 'done');
  }

  /** Whether a run is claiming or fetching its LoRAs (a pre-warm hint then leaves the link to it). */
  anyDownloading(): boolean {
    return [...this.runs].some((r) => r.phase === 'claiming' || r.phase === 'preparing');
  }

  /** The control plane's `stop_jobs`: cancels the runs of that job and epoch. */
  stop(job: { job_id: string; epoch: number }, reason: string): void {
    for (const r of this.runs) {
      if (r.jobId === job.job_id && r.epoch === job.epoch) r.cancel('server', reason);
    }
  }

  /** Shutdown: cancels every run (reported failed/retryable, so the scheduler re-routes it). */
  cancelAll(): void {
    for (const r of this.runs) r.cancel('shutdown', SHUTDOWN_REASON);
  }

  /** Waits until every run (including ones held meanwhile) has settled, for at most `ms`; true if they all did. */
  async waitFor(ms: number): Promise<boolean> {
    if (this.settling.size === 0) return true;
    let timer: NodeJS.Timeout | undefined;
    const all = (async () => {
      while (this.settling.size > 0) await Promise.allSettled([...this.settling]);
    })();
    const done = await Promise.race([all.then(() => true), new Promise<boolean>((r) => (timer = setTimeout(() => r(false), ms)))]);
    clearTimeout(timer);
    return done;
  }
}

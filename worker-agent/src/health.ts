// The machine's own health, as the heartbeat reports it (`unhealthy_reason`). A run whose failure is the machine's
// (executor missing, disk full, executor backend down) marks it; the scheduler then sends nothing here. Every
// heartbeat re-checks: the executor's preflight passes again (or, for an executor without one, RECHECK_MS passed)
// and, after a full disk, there is room again, and the mark clears by itself.
import type { Logger } from './logger.js';

/** Free disk below this after an ENOSPC keeps the machine unhealthy. */
export const MIN_FREE_DISK_BYTES = 256 * 1024 * 1024;
/** An executor without a preflight gets another chance after this long. */
export const RECHECK_MS = 30_000;

export class MachineHealth {
  private reason: string | null = null;
  private markedAt = 0;

  constructor(
    private readonly opts: {
      preflight?: () => string | null;
      freeDiskBytes: () => number | undefined;
      log: Logger;
      now?: () => number;
      /** Free disk needed before a "disk full" mark clears (CACHE_DISK_RESERVE); at least MIN_FREE_DISK_BYTES. */
      minFreeDiskBytes?: number;
    },
  ) {}

  get unhealthyReason(): string | null {
    return this.reason;
  }

  mark(reason: string): void {
    if (this.reason === null) this.opts.log.error({ reason }, 'machine marked unhealthy: no new jobs until fixed (jobs are handed back without spending attempts)');
    this.reason = reason;
    this.markedAt = (this.opts.now ?? Date.now)();
  }

  /** Re-checks before a heartbeat; returns the reason to report (null when healthy). */
  recheck(): string | null {
    if (this.reason === null) return null;
    const problem = this.opts.preflight?.() ?? null;
    if (problem) {
      this.reason = problem;
      return problem;
    }
    if (/disk full/i.test(this.reason)) {
      const free = this.opts.freeDiskBytes();
      if (free === undefined || free < Math.max(MIN_FREE_DISK_BYTES, this.opts.minFreeDiskBytes ?? 0)) return this.reason;
    } else if (!this.opts.preflight && (this.opts.now ?? Date.now)() - this.markedAt < RECHECK_MS) {
      return this.reason;
    }
    this.opts.log.info({ was: this.reason }, 'machine healthy again');
    this.reason = null;
    return null;
  }
}

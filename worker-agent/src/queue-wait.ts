// How long a queued run (QUEUE_DEPTH > 0) may wait on this machine before the agent hands it back to be placed
// elsewhere (issue 14: "a job queued on a machine is taken back and re-placed if it waits too long there"). A queued
// job normally waits at most the rest of the run ahead of it; a wait far past that means the run ahead is an outlier,
// and another machine would start the job sooner. QUEUE_WAIT_LIMIT_SECONDS=auto (default) derives the bound from this
// machine's own recent run times: QUEUE_WAIT_RUNS × their mean (DEFAULT_RUN_SECONDS before any run), at least
// QUEUE_WAIT_MIN_SECONDS; a number fixes it; 0 turns the take-back off.

/** The bound is this many expected runs. */
export const QUEUE_WAIT_RUNS = 2;
/** The run time assumed before the machine has finished a run (the scheduler's DEFAULT_EXPECTED_JOB_SECONDS). */
export const DEFAULT_RUN_SECONDS = 20;
/** Never hand back sooner: re-placing costs a scheduler pass, a claim and maybe a download elsewhere. */
export const QUEUE_WAIT_MIN_SECONDS = 10;
import type { RunSlots } from './run-slots.js';

/** Runs remembered for the mean. */
const RECENT_RUNS = 20;

export class QueueWaitLimit {
  private readonly recent: number[] = [];

  /** `fixedSeconds`: 'auto' (learned) or a number of seconds (0 = never hand back). */
  constructor(private readonly fixedSeconds: number | 'auto') {}

  /** Records the executor time of a run that ended on its own (succeeded or failed, not cancelled). */
  observeRun(ms: number): void {
    if (!(ms >= 0)) return;
    this.recent.push(ms);
    if (this.recent.length > RECENT_RUNS) this.recent.shift();
  }

  /** Mean of the recent runs, in seconds (the default before any). */
  expectedRunSeconds(): number {
    if (this.recent.length === 0) return DEFAULT_RUN_SECONDS;
    return this.recent.reduce((a, b) => a + b, 0) / this.recent.length / 1000;
  }

  /** The bound in ms, counted from the claim; undefined = never hand back. */
  limitMs(): number | undefined {
    if (this.fixedSeconds === 'auto') return Math.max(QUEUE_WAIT_MIN_SECONDS, QUEUE_WAIT_RUNS * this.expectedRunSeconds()) * 1000;
    return this.fixedSeconds > 0 ? this.fixedSeconds * 1000 : undefined;
  }
}

/**
 * Waits for a run slot until `signal` aborts (the run is cancelled) or, with a limit, until `limitMs` after the claim.
 * `release` when a slot was taken; `waitedTooLong` (the reason to report) when the limit passed first. A slot that
 * frees in the same instant as the limit wins: the wait ends once, in the run-slot line.
 */
export async function takeRunSlot(
  slots: RunSlots,
  signal: AbortSignal,
  limitMs: number | undefined,
  claimedAtMs: number,
): Promise<{ release?: () => void; waitedTooLong?: string }> {
  if (limitMs === undefined) return slots.take(signal).then((release) => ({ release }), () => ({}));
  const waitEnd = new AbortController();
  const onAbort = () => waitEnd.abort(signal.reason);
  signal.addEventListener('abort', onAbort, { once: true });
  if (signal.aborted) onAbort();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    waitEnd.abort(new Error('queue wait limit'));
  }, Math.max(0, claimedAtMs + limitMs - Date.now()));
  try {
    return { release: await slots.take(waitEnd.signal) };
  } catch {
    if (!timedOut || signal.aborted) return {};
    return { waitedTooLong: `not started within ${Math.round(limitMs / 1000)} s of its claim (QUEUE_WAIT_LIMIT_SECONDS): handed back to be placed elsewhere` };
  } finally {
    clearTimeout(timer);
    signal.removeEventListener('abort', onAbort);
  }
}

// A run's end as the event the agent reports (job-run.ts calls these), and the report itself: outbox first, then the
// API until it answers.
//
// Outcome mapping (the `retryable` flag decides whether the scheduler tries another attempt):
//   executor exit 0                          → outputs delivered (./outputs.ts) → succeeded (result.json as result, + outputs)
//   outputs over the limits / bad file name  → failed, retryable=false — the API's or the agent's message
//   output upload trouble (network, storage) → failed, retryable=true
//   executor exit ≠ 0 (the job's own error)  → failed, retryable=false — re-running the same payload would fail again
//   executor exit 75 (EX_TEMPFAIL)           → failed, retryable=true  — the job says "try again"
//   executor killed by a foreign signal      → failed, retryable=true  — OOM killer, GPU fault: machine trouble
//   executor could not start / disk full     → failed, handback=true   — the machine's fault: no attempt spent, the
//                                              machine reports itself unhealthy until it is fixed
//   CacheFullError / download failure        → failed, retryable=true  — machine-side; another machine may have room
//   InvalidLoraError (malformed claim data)  → failed, retryable=false — another attempt gets the same data
//   agent shutting down (drain grace over)   → failed, handback=true   — "agent shutting down", re-routed elsewhere
//   queued past QUEUE_WAIT_LIMIT_SECONDS     → failed, handback=true   — not started in time here (queue-wait.ts)
//   cancelled by the control plane / stale   → nothing reported (the job is cancelled or belongs to another epoch)
import type { JobEventInput } from '../../contract/jobs.js';
import type { JobOutput } from '../../contract/outputs.js';
import type { ControlPlaneApi } from './api.js';
import type { ExecutionOutcome } from './executor/types.js';
import type { Logger } from './logger.js';
import type { Outbox } from './outbox.js';

export type CancelKind = 'server' | 'stale' | 'shutdown';

export const SHUTDOWN_REASON = 'agent shutting down';

export interface OutcomeContext {
  epoch: number;
  /** Who cancelled the run, if anyone. */
  cancelKind: CancelKind | undefined;
  outputs: JobOutput[];
  /** Why the agent itself gave the job back (queued too long), if it did. */
  handBackReason: string | undefined;
  /** The machine cannot run jobs: report it in the heartbeat. */
  markUnhealthy?: ((reason: string) => void) | undefined;
}

/** Whether this outcome marks the machine unhealthy (outcomeEvent does): its heartbeat must land before the report. */
export const marksMachineUnhealthy = (o: ExecutionOutcome): boolean => o.status === 'failed' && !!(o.infrastructure || o.backendLost);

/** The event to report, or null when nothing should be (cancelled by the control plane, or stale). */
export function outcomeEvent(o: ExecutionOutcome, c: OutcomeContext): JobEventInput | null {
  if (c.cancelKind === 'server' || c.cancelKind === 'stale') return null;
  switch (o.status) {
    case 'succeeded':
      return {
        type: 'succeeded',
        epoch: c.epoch,
        ...(o.result === undefined ? {} : { result: o.result }),
        ...(c.outputs.length ? { outputs: c.outputs } : {}),
      };
    case 'failed':
      if (o.infrastructure) {
        // The machine failed, not the job: hand it back (no attempt spent) and stop taking work until it is fixed.
        c.markUnhealthy?.(o.reason.slice(0, 1000));
        return { type: 'failed', epoch: c.epoch, reason: o.reason.slice(0, 2000), retryable: true, handback: true };
      }
      // The backend went away under the run: the attempt is spent (the job may have caused it), and the machine says it
      // cannot run the retry either.
      if (o.backendLost) c.markUnhealthy?.(o.reason.slice(0, 1000));
      return { type: 'failed', epoch: c.epoch, reason: o.reason.slice(0, 2000), retryable: o.retryable };
    case 'cancelled':
      // Only the agent itself cancels with something to report: it is shutting down, or the job waited too long
      // for a run slot here; either way hand the job back (the job did nothing wrong: no attempt is spent).
      return { type: 'failed', epoch: c.epoch, reason: c.handBackReason ?? SHUTDOWN_REASON, retryable: true, handback: true };
  }
}

/**
 * Sends the outcome until the API answers. Written to the outbox first, removed once answered. Returns whether it
 * was accepted (false: 409 or another definite refusal), or undefined when the agent stopped waiting.
 */
export async function reportOutcome(
  env: { api: ControlPlaneApi; outbox: Outbox; hardStop: AbortSignal },
  jobId: string,
  epoch: number,
  event: JobEventInput,
  log: Logger,
): Promise<boolean | undefined> {
  env.outbox.put(jobId, epoch, event);
  try {
    let answer = await env.api.event(jobId, event, { retries: Infinity, maxDelayMs: 15_000, signal: env.hardStop });
    if (!answer.ok && event.type === 'succeeded' && (answer.status === 413 || answer.status === 400)) {
      // The result itself was refused (too large, not storable): report that rather than lose the outcome.
      const failed: JobEventInput = { type: 'failed', epoch, reason: `the job's result was refused by the API: ${answer.message}`.slice(0, 2000), retryable: false };
      env.outbox.put(jobId, epoch, failed);
      answer = await env.api.event(jobId, failed, { retries: Infinity, maxDelayMs: 15_000, signal: env.hardStop });
    }
    env.outbox.remove(jobId, epoch);
    if (answer.ok) {
      log.info({ outcome: event.type, accepted: answer.value.accepted }, 'outcome reported');
      return answer.value.accepted;
    }
    log.warn({ outcome: event.type, status: answer.status, err: answer.message }, 'outcome refused (the job moved on)');
    return false;
  } catch (err) {
    log.warn({ outcome: event.type, err: (err as Error)?.message }, 'outcome not reported yet; kept in the outbox for the next start');
    return undefined;
  }
}

/** Cache/download failures are machine-side (retry elsewhere), except malformed claim data. */
export function failureFromCacheError(err: unknown): ExecutionOutcome {
  const e = err as Error | undefined;
  const name = e?.name ?? 'Error';
  const message = e?.message ?? String(err);
  if (name === 'InvalidLoraError') return { status: 'failed', retryable: false, reason: `invalid LoRA in the job: ${message}` };
  if (name === 'CacheFullError') return { status: 'failed', retryable: true, reason: `LoRA cache full on this machine: ${message}` };
  // DiskFullError (cache/disk-space.ts) carries ENOSPC; SQLITE_FULL is the cache database on a full disk.
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ENOSPC' || code === 'SQLITE_FULL' || /\bENOSPC\b/.test(message)) {
    return { status: 'failed', retryable: true, infrastructure: true, reason: /^disk full/i.test(message) ? `${message} (on this machine)` : `disk full on this machine: ${message}` };
  }
  return { status: 'failed', retryable: true, reason: `LoRA download failed (${name}): ${message}` };
}

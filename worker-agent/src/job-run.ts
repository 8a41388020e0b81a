// One dispatch message, from receipt to settlement:
//   claim(job, epoch) ─409─> complete the message (stale or duplicate dispatch), done
//        └200─> acquire LoRAs (cache hit | single-flight download) ─> `started` {hit, missing, download_ms, bytes}
//               ─> executor (lines → `log` batches, `::progress` → `progress`) ─> outcome `succeeded` | `failed`
//               ─> outcome accepted (2xx, or 409: the job moved on) ─> complete the message
// The message lock is renewed the whole time. A cancel (heartbeat stop_jobs, `cancel_requested`, 409 on an event, or
// the agent shutting down) stops whatever phase is running. The cache entries are released and the run directory
// removed in `finally`, whatever happened.
// How its end becomes the reported outcome: run-outcome.ts.
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { ClaimResponse, JobEventInput } from '../../contract/jobs.js';
import { isDispatchLockLost, type DispatchReceiver, type ReceivedDispatch } from '../../dispatch/types.js';
import type { AcquireResult, LoraCache } from './cache/lora-cache.js';
import { freshDownloadUrl, type ControlPlaneApi } from './api.js';
import type { Execution, ExecutionOutcome, Executor } from './executor/types.js';
import type { Logger } from './logger.js';
import type { Outbox } from './outbox.js';
import { deliverOutputs } from './outputs.js';
import type { JobOutput } from '../../contract/outputs.js';
import { RunReporter, type StopKind } from './reporter.js';
import { RunTrace } from './run-trace.js';
import type { RunSlots } from './run-slots.js';
import { takeRunSlot, type QueueWaitLimit } from './queue-wait.js';
import { failureFromCacheError, marksMachineUnhealthy, outcomeEvent, reportOutcome, type CancelKind } from './run-outcome.js';

export type RunPhase = 'claiming' | 'preparing' | 'running' | 'reporting' | 'done';
export { failureFromCacheError, SHUTDOWN_REASON, type CancelKind } from './run-outcome.js';

/** What a run needs from the agent around it. */
export interface RunEnvironment {
  api: ControlPlaneApi;
  receiver: DispatchReceiver;
  cache: Pick<LoraCache, 'acquire'>;
  executor: Executor;
  outbox: Outbox;
  log: Logger;
  stateDir: string;
  keepRunDirs: boolean;
  lockRenewMs: number;
  /** Aborted when the agent stops waiting for anything (hard shutdown): retries end, outcomes stay in the outbox. */
  hardStop: AbortSignal;
  /** True once the agent is draining: a run that has not claimed yet gives its message back. */
  isStopping(): boolean;
  /** Whether another run of this agent holds this attempt, in any phase (a duplicate delivery). */
  isRunningElsewhere(run: JobRun): boolean;
  /** The machine itself cannot run jobs (executor missing, disk full, backend down): report it in the heartbeat. */
  markUnhealthy?(reason: string): void;
  /** Resolves once a heartbeat sent after this call has landed (or failed), bounded: the health it carries is known. */
  healthReported?(): Promise<void>;
  /** With queued dispatches (QUEUE_DEPTH > 0): a run waits here, LoRAs ready, for one of the SLOTS (run-slots.ts). */
  runSlots?: RunSlots;
  /** With queued dispatches: how long a run may wait for a slot, from its claim, before it is handed back. */
  queueWait?: QueueWaitLimit;
}

/** How a run ended, for the agent's bookkeeping and tests. */
export type RunResult =
  | { kind: 'abandoned'; why: string }
  | { kind: 'dropped'; why: string }
  | { kind: 'reported'; event: JobEventInput['type']; accepted: boolean }
  | { kind: 'unreported'; why: string };

export class JobRun {
  readonly jobId: string;
  readonly epoch: number;
  phase: RunPhase = 'claiming';
  private cancelKind: CancelKind | undefined;
  private cancelReason = '';
  private readonly abort = new AbortController();
  private execution: Execution | undefined;
  private renewTimer: NodeJS.Timeout | undefined;
  private renewing: Promise<void> | undefined;
  private settling = false;
  private lockLost = false;
  private outputs: JobOutput[] = [];
  private renewFailures = 0;
  /** Set when the run hands its job back instead of running it (waited too long for a run slot). */
  private handBackReason: string | undefined;
  private readonly log: Logger;

  constructor(
    readonly message: ReceivedDispatch,
    private readonly env: RunEnvironment,
  ) {
    this.jobId = message.message.job_id;
    this.epoch = message.message.epoch;
    this.log = env.log.child({ job_id: this.jobId, epoch: this.epoch });
  }

  get cancelled(): CancelKind | undefined {
    return this.cancelKind;
  }

  /** Stops the run in whatever phase it is. The first cancel's kind decides what is reported. */
  cancel(kind: CancelKind, reason: string): void {
    if (this.phase === 'done' || this.phase === 'reporting' || this.cancelKind) return;
    this.cancelKind = kind;
    this.cancelReason = reason;
    this.log.info({ kind, reason, phase: this.phase }, 'cancelling run');
    this.abort.abort(new Error(reason));
    this.execution?.cancel(reason);
  }

  async run(): Promise<RunResult> {
    const tr = new RunTrace(this.jobId, this.epoch, undefined, this.message.message.traceparent);
    const result = await this.runTraced(tr);
    tr.end(result.kind, 'why' in result ? result.why : undefined);
    return result;
  }

  private async runTraced(tr: RunTrace): Promise<RunResult> {
    this.startLockRenewal();
    let acquired: AcquireResult | undefined;
    let releaseSlot: (() => void) | undefined;
    let runDir: string | undefined;
    try {
      if (this.env.isStopping()) return await this.giveBack('agent is draining');

      // 1. claim
      const claimAnswer = await this.env.api
        .claim(this.jobId, this.epoch, { retries: 6, maxDelayMs: 10_000, signal: this.env.hardStop }, tr.begin('job.claim'))
        .catch((err: unknown) => err as Error);
      tr.done({}, claimAnswer instanceof Error || !claimAnswer.ok ? claimAnswer.message : undefined);
      if (claimAnswer instanceof Error) return await this.giveBack(`claim failed: ${claimAnswer.message}`);
      if (!claimAnswer.ok) {
        if (claimAnswer.status === 401 || claimAnswer.status === 403) {
          this.log.error({ status: claimAnswer.status, err: claimAnswer.message }, 'claim refused: check the machine token');
          return await this.giveBack(`claim refused (${claimAnswer.status})`);
        }
        await this.handBackLostClaim(claimAnswer.details);
        this.log.info({ status: claimAnswer.status, reason: claimAnswer.message }, 'claim rejected; dropping the dispatch');
        await this.settle();
        return { kind: 'dropped', why: claimAnswer.message };
      }
      const claim = claimAnswer.value;
      const claimedAtMs = Date.now();
      this.log.info({ attempt: claim.attempt, loras: claim.loras.length, service: claim.service_required }, 'claimed');

      const reporter = new RunReporter({
        api: this.env.api,
        jobId: this.jobId,
        epoch: this.epoch,
        log: this.log,
        signal: this.env.hardStop,
        onStop: (kind: StopKind, why) => this.cancel(kind === 'stale' ? 'stale' : 'server', why),
      });

      // 2. LoRAs
      this.phase = 'preparing';
      let outcome: ExecutionOutcome | undefined;
      try {
        tr.begin('lora.acquire', { 'lora_router.job.loras': claim.loras.length });
        acquired = await this.acquire(claim, reporter);
        tr.cache(claim.loras, acquired);
      } catch (err) {
        tr.done({}, (err as Error)?.message ?? String(err));
        outcome = this.cancelKind ? this.cancelledOutcome() : failureFromCacheError(err);
        this.log.warn({ err: (err as Error)?.message, error_type: (err as Error)?.name }, 'could not prepare LoRAs');
        reporter.line('agent', `[agent] could not prepare LoRAs: ${(err as Error)?.message ?? String(err)}`);
      }

      // 3. a run slot (queued dispatches wait here, their LoRAs downloaded), then started + executor
      if (acquired && !this.cancelKind && this.env.runSlots) {
        const slot = await takeRunSlot(this.env.runSlots, this.abort.signal, this.env.queueWait?.limitMs(), claimedAtMs);
        releaseSlot = slot.release;
        if (slot.waitedTooLong && !this.cancelKind) {
          this.handBackReason = slot.waitedTooLong;
          this.log.info({ reason: slot.waitedTooLong }, 'queued too long; handing the job back');
          reporter.line('agent', `[agent] ${slot.waitedTooLong}`);
          outcome = { status: 'cancelled', reason: slot.waitedTooLong, forced: false };
          acquired.release(); // it will not run here: its LoRAs are evictable again at once
          acquired = undefined;
        }
      }
      if (acquired && !this.cancelKind) {
        const started = await this.sendStarted(acquired);
        if (started === 'stale') this.cancel('stale', 'the attempt moved on before it started');
        else if (started === 'cancel') this.cancel('server', 'the job was cancelled');
      }
      if (acquired && !this.cancelKind) {
        this.phase = 'running';
        tr.begin('job.execute', { 'lora_router.job.service': claim.service_required });
        runDir = join(this.env.stateDir, 'runs', `${this.jobId}.${this.epoch}`);
        rmSync(runDir, { recursive: true, force: true });
        const outputDir = join(runDir, 'output');
        mkdirSync(outputDir, { recursive: true });
        this.execution = this.env.executor.start(
          {
            jobId: this.jobId,
            epoch: this.epoch,
            attempt: claim.attempt,
            serviceRequired: claim.service_required,
            payload: claim.payload,
            loras: claim.loras.map((l) => ({ kind: l.kind, key: l.key, path: acquired!.paths[l.key]!, sha256: l.sha256, size_bytes: l.size_bytes })),
            runDir,
            outputDir,
          },
          { log: (stream, line) => reporter.line(stream, line), progress: (p, m) => reporter.progress(p, m) },
        );
        if (this.cancelKind) this.execution.cancel(this.cancelReason); // cancelled while starting
        const execStartMs = Date.now();
        outcome = await this.execution.done;
        if (outcome.status !== 'cancelled' && !this.cancelKind) this.env.queueWait?.observeRun(Date.now() - execStartMs);
        if (outcome.status === 'succeeded' && !this.cancelKind) outcome = await this.deliver(outputDir, reporter, outcome);
        this.log.info({ status: outcome.status, ...(outcome.status === 'failed' ? { reason: outcome.reason.slice(0, 300) } : {}) }, 'executor finished');
      }
      tr.done(outcome ? { 'lora_router.execution.status': outcome.status } : {}, outcome?.status === 'failed' ? outcome.reason.slice(0, 300) : undefined);
      outcome ??= this.cancelledOutcome();
      releaseSlot?.(); // the GPU is free: the next queued run may start while this one reports

      // 4. outcome
      this.phase = 'reporting';
      await reporter.flush();
      const event = outcomeEvent(outcome, {
        epoch: this.epoch,
        cancelKind: this.cancelKind,
        outputs: this.outputs,
        handBackReason: this.handBackReason,
        markUnhealthy: this.env.markUnhealthy,
      });
      if (!event) {
        this.log.info({ cancelled: this.cancelKind, reason: this.cancelReason }, 'run stopped; nothing to report');
        await this.settle();
        return { kind: 'unreported', why: this.cancelReason };
      }
      // A failure that marked the machine unhealthy is reported after the heartbeat saying so has landed: the retry (or
      // the handed-back job) is placed as soon as the report is in, and must not come back here.
      if (marksMachineUnhealthy(outcome)) await this.env.healthReported?.();
      tr.outcome(event);
      tr.begin('job.report', { 'lora_router.job.outcome': event.type });
      const accepted = await reportOutcome(this.env, this.jobId, this.epoch, event, this.log);
      tr.done({ 'lora_router.report.accepted': accepted ?? false });
      if (accepted === undefined) return { kind: 'unreported', why: 'agent stopped before the outcome was accepted (kept in the outbox)' };
      await this.settle();
      return { kind: 'reported', event: event.type, accepted };
    } catch (err) {
      // Not expected: every step above handles its own failures. Leave the message for redelivery.
      this.log.error({ err: (err as Error)?.stack ?? String(err) }, 'run failed unexpectedly');
      return { kind: 'unreported', why: (err as Error)?.message ?? String(err) };
    } finally {
      this.phase = 'done';
      clearInterval(this.renewTimer);
      releaseSlot?.();
      acquired?.release();
      if (runDir && !this.env.keepRunDirs) rmSync(runDir, { recursive: true, force: true });
    }
  }

  private startLockRenewal(): void {
    this.renewTimer = setInterval(() => {
      if (this.lockLost || this.renewing || this.settling) return;
      this.renewing = this.env.receiver
        .renew(this.message)
        .then(() => {
          this.renewFailures = 0;
        })
        .catch((err: unknown) => {
          if (this.settling) return; // settled meanwhile: the message is gone on purpose
          if (isDispatchLockLost(err)) {
            // The message will be delivered again; the claim's epoch fence makes that second delivery a no-op (409).
            this.lockLost = true;
            this.log.warn({ err: (err as Error)?.message }, 'dispatch lock lost; the run continues (fenced by its epoch)');
            return;
          }
          // A transient failure (timeout, connection trouble): the lock still runs for the rest of its duration, so
          // try again at the next interval rather than giving the lock up.
          this.renewFailures++;
          this.log.warn({ err: (err as Error)?.message, failures: this.renewFailures }, 'dispatch lock renewal failed; retrying');
        })
        .finally(() => {
          this.renewing = undefined;
        });
    }, this.env.lockRenewMs);
    this.renewTimer.unref();
  }

  /** Renewal state, for the agent's tests: whether the lock is known lost and how many renewals failed in a row. */
  get lockState(): { lost: boolean; failuresInARow: number } {
    return { lost: this.lockLost, failuresInARow: this.renewFailures };
  }

  /**
   * Stops renewing and waits for a renewal in flight. A Storage queue renewal replaces the message's pop receipt, so
   * completing or abandoning while one is in flight could use a stale receipt and leave the message to come back.
   */
  private async stopRenewal(): Promise<void> {
    this.settling = true;
    clearInterval(this.renewTimer);
    await this.renewing;
  }

  private async giveBack(why: string): Promise<RunResult> {
    await this.stopRenewal();
    await this.env.receiver.abandon(this.message).catch((err: unknown) => this.log.warn({ err: (err as Error)?.message }, 'abandon failed'));
    this.log.info({ why }, 'dispatch given back');
    return { kind: 'abandoned', why };
  }

  /** Completes the dispatch message: its job needs nothing more from this delivery. */
  private async settle(): Promise<void> {
    await this.stopRenewal();
    try {
      await this.env.receiver.complete(this.message);
    } catch (err) {
      // Lock lost or receiver gone: the message comes back and its claim gets 409, which completes it then.
      this.log.warn({ err: (err as Error)?.message }, 'could not complete the dispatch message');
    }
  }

  /**
   * A 409 saying this very attempt is already `running` on this machine while nothing here runs it means an earlier
   * process of this agent claimed it and died (or the claim's answer was lost). Report the attempt failed (retryable)
   * so it is re-routed now instead of after the reaper's orphan timeout.
   */
  private async handBackLostClaim(details: unknown): Promise<void> {
    const d = details as { status?: unknown; epoch?: unknown } | undefined;
    if (d?.status !== 'running' || d.epoch !== this.epoch) return;
    if (this.env.isRunningElsewhere(this) || this.env.outbox.has(this.jobId, this.epoch)) return;
    const reason = 'the agent lost this attempt (restarted after claiming it); retrying elsewhere';
    this.log.warn({}, reason);
    await this.env.api
      .event(this.jobId, { type: 'failed', epoch: this.epoch, reason, retryable: true }, { retries: 4, signal: this.env.hardStop })
      .catch((err: unknown) => this.log.warn({ err: (err as Error)?.message }, 'could not hand back a lost attempt'));
  }

  private async acquire(claim: ClaimResponse, reporter: RunReporter): Promise<AcquireResult> {
    const reported = new Map<string, number>();
    const result = await this.env.cache.acquire(claim.loras, this.abort.signal, (key, bytes, total) => {
      // A line per quarter, so users see a long download move.
      const quarter = total > 0 ? Math.floor((bytes / total) * 4) : 4;
      if ((reported.get(key) ?? -1) >= quarter) return;
      reported.set(key, quarter);
      reporter.line('agent', `[agent] downloading ${key}: ${Math.round((bytes / Math.max(1, total)) * 100)}% of ${total} bytes`);
    }, (key) => freshDownloadUrl(this.env.api, this.jobId, this.epoch, key, this.abort.signal));
    if (result.hit.length) reporter.line('agent', `[agent] cache hit: ${result.hit.join(', ')}`);
    if (result.missing.length) {
      reporter.line('agent', `[agent] fetched ${result.missing.join(', ')} (${result.bytesDownloaded} bytes in ${Math.round(result.downloadMs)} ms)`);
    }
    this.log.info(
      { hit: result.hit, missing: result.missing, bytes_downloaded: result.bytesDownloaded, download_ms: Math.round(result.downloadMs) },
      'LoRAs ready',
    );
    return result;
  }

  private async sendStarted(a: AcquireResult): Promise<'ok' | 'stale' | 'cancel' | 'unknown'> {
    const ev: JobEventInput = {
      type: 'started',
      epoch: this.epoch,
      cache: {
        hit_loras: a.hit,
        missing_loras: a.missing,
        download_ms: Math.max(0, Math.round(a.downloadMs)),
        bytes_downloaded: Math.max(0, Math.round(a.bytesDownloaded)),
      },
    };
    try {
      const answer = await this.env.api.event(this.jobId, ev, { retries: 6, maxDelayMs: 10_000, signal: this.env.hardStop });
      if (!answer.ok) return answer.status === 409 || answer.status === 404 ? 'stale' : 'unknown';
      return answer.value.cancel_requested ? 'cancel' : 'ok';
    } catch (err) {
      // The job is claimed (running) server-side; run it and keep trying to report the outcome.
      this.log.warn({ err: (err as Error)?.message }, 'could not report started; running anyway');
      return 'unknown';
    }
  }

  /** Uploads the run's output folder for this epoch; the outcome becomes a failure when that cannot be done. */
  private async deliver(outputDir: string, reporter: RunReporter, outcome: ExecutionOutcome): Promise<ExecutionOutcome> {
    const delivery = await deliverOutputs({
      api: this.env.api,
      jobId: this.jobId,
      epoch: this.epoch,
      outputDir,
      signal: this.abort.signal,
      onProgress: (line) => reporter.line('agent', line),
    });
    if (delivery.kind === 'stale') {
      this.cancel('stale', `output upload refused: ${delivery.reason}`);
      return this.cancelledOutcome();
    }
    if (delivery.kind === 'failed') {
      reporter.line('agent', `[agent] outputs not delivered: ${delivery.reason}`);
      this.log.warn({ reason: delivery.reason, retryable: delivery.retryable }, 'outputs not delivered');
      return { status: 'failed', reason: delivery.reason, retryable: delivery.retryable };
    }
    this.outputs = delivery.outputs;
    if (delivery.outputs.length) {
      this.log.info({ outputs: delivery.outputs.length, bytes: delivery.bytes, ms: Math.round(delivery.ms) }, 'outputs delivered');
    }
    return outcome;
  }

  private cancelledOutcome(): ExecutionOutcome {
    return { status: 'cancelled', reason: this.cancelReason || 'cancelled', forced: false };
  }

}

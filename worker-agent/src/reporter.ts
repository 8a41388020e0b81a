// Ships one run's log lines and progress to the control plane as `log` / `progress` events.
//
// Lines are batched: a batch goes out 1 s after its first line (FLUSH_MS), or at once when 500 lines are waiting, so
// users see output at most ~1 s late without one POST per line. A batch is also cut by size (MAX_EVENT_LINE_BYTES of
// JSON-encoded lines), so 500 long lines never exceed the API's 1 MiB body limit. Progress is coalesced (only the latest value waiting
// is sent). Sends are sequential, so events arrive in order. Logs are best effort: a batch that still fails after
// retries is dropped with a note (the outcome, sent separately, is never dropped). An answer of 409 (the attempt is
// no longer current) or `cancel_requested` is passed to onStop, so the run can stop its executor.
import type { JobEventInput } from '../../contract/jobs.js';
import type { ControlPlaneApi } from './api.js';
import type { Logger } from './logger.js';

export const FLUSH_MS = 1000;
export const MAX_LINES_PER_EVENT = 500;
/** JSON-encoded bytes of lines per event: the API refuses bodies over 1 MiB; the rest is headroom for the envelope. */
export const MAX_EVENT_LINE_BYTES = 768 * 1024;
/** While the API is unreachable, at most this many lines wait; more are counted and dropped. */
export const MAX_BUFFERED_LINES = 20_000;

type Stream = 'stdout' | 'stderr' | 'agent';
export type StopKind = 'cancel_requested' | 'stale';

export interface ReporterOptions {
  api: ControlPlaneApi;
  jobId: string;
  epoch: number;
  log: Logger;
  onStop(kind: StopKind, message: string): void;
  /** Aborts sends in flight (agent shutting down hard). */
  signal?: AbortSignal;
  flushMs?: number;
  maxLinesPerEvent?: number;
  maxEventLineBytes?: number;
  retries?: number;
}

export class RunReporter {
  private buffer: { stream: Stream; line: string }[] = [];
  private progressWaiting: { progress: number; message?: string } | undefined;
  private timer: NodeJS.Timeout | undefined;
  private draining: Promise<void> | undefined;
  private dropped = 0;
  private stopped = false;
  private stopNotified = false;
  /** Counters for tests and the run's final log line. */
  readonly stats = { events: 0, lines: 0, progress: 0, failedSends: 0 };

  constructor(private readonly opts: ReporterOptions) {}

  line(stream: Stream, line: string): void {
    if (this.stopped) return;
    if (this.buffer.length >= MAX_BUFFERED_LINES) {
      this.dropped++;
      return;
    }
    this.buffer.push({ stream, line });
    if (this.buffer.length >= (this.opts.maxLinesPerEvent ?? MAX_LINES_PER_EVENT)) this.kick();
    else this.timer ??= setTimeout(() => this.kick(), this.opts.flushMs ?? FLUSH_MS);
  }

  progress(progress: number, message?: string): void {
    if (this.stopped) return;
    this.progressWaiting = message === undefined ? { progress } : { progress, message };
    this.kick();
  }

  /** Sends everything waiting and resolves when nothing is left (or sending stopped). */
  async flush(): Promise<void> {
    for (let i = 0; i < 1000 && (this.draining || this.buffer.length > 0 || this.progressWaiting); i++) {
      this.kick();
      await this.draining;
    }
  }

  /** Drops whatever is waiting and stops sending (the attempt moved on). */
  stop(): void {
    this.stopped = true;
    this.buffer = [];
    this.progressWaiting = undefined;
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private kick(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.draining || this.stopped) return;
    this.draining = this.drain().finally(() => {
      this.draining = undefined;
      // Lines that arrived while sending wait for their own timer (or go now if a full batch is waiting).
      if (!this.stopped && this.buffer.length > 0) {
        if (this.buffer.length >= (this.opts.maxLinesPerEvent ?? MAX_LINES_PER_EVENT)) this.kick();
        else this.timer ??= setTimeout(() => this.kick(), this.opts.flushMs ?? FLUSH_MS);
      } else if (!this.stopped && this.progressWaiting) {
        this.kick();
      }
    });
  }

  private async drain(): Promise<void> {
    const max = this.opts.maxLinesPerEvent ?? MAX_LINES_PER_EVENT;
    const maxBytes = this.opts.maxEventLineBytes ?? MAX_EVENT_LINE_BYTES;
    if (this.dropped > 0) {
      this.buffer.unshift({ stream: 'agent', line: `[agent] ${this.dropped} log line(s) dropped while the API was unreachable` });
      this.dropped = 0;
    }
    const batch = this.buffer;
    this.buffer = [];
    let i = 0;
    while (i < batch.length && !this.stopped) {
      const stream = batch[i]!.stream;
      const lines: string[] = [];
      let bytes = 0;
      while (i < batch.length && batch[i]!.stream === stream && lines.length < max) {
        // As it will be encoded in the body: quotes, escapes (up to 6 bytes per control character) and a comma.
        const size = Buffer.byteLength(JSON.stringify(batch[i]!.line)) + 1;
        if (lines.length > 0 && bytes + size > maxBytes) break;
        bytes += size;
        lines.push(batch[i++]!.line);
      }
      const ok = await this.send({ type: 'log', epoch: this.opts.epoch, stream, lines });
      if (ok) this.stats.lines += lines.length;
    }
    if (this.progressWaiting && !this.stopped) {
      const p = this.progressWaiting;
      this.progressWaiting = undefined;
      if (await this.send({ type: 'progress', epoch: this.opts.epoch, ...p })) this.stats.progress++;
    }
  }

  private async send(ev: JobEventInput): Promise<boolean> {
    try {
      const answer = await this.opts.api.event(this.opts.jobId, ev, {
        retries: this.opts.retries ?? 5,
        maxDelayMs: 5_000,
        signal: this.opts.signal,
      });
      this.stats.events++;
      if (!answer.ok) {
        if (answer.status === 409 || answer.status === 404) {
          this.notify('stale', answer.message);
          this.stop();
        } else {
          this.opts.log.warn({ job_id: this.opts.jobId, status: answer.status, err: answer.message }, `${ev.type} event rejected`);
        }
        return false;
      }
      if (answer.value.cancel_requested) this.notify('cancel_requested', 'the job was cancelled');
      return true;
    } catch (err) {
      this.stats.failedSends++;
      if (ev.type === 'log') this.dropped += ev.lines.length;
      this.opts.log.warn({ job_id: this.opts.jobId, type: ev.type, err: (err as Error).message }, 'could not send job event; dropped');
      return false;
    }
  }

  private notify(kind: StopKind, message: string): void {
    if (this.stopNotified) return;
    this.stopNotified = true;
    this.opts.onStop(kind, message);
  }
}

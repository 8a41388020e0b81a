// The spans of one run (job-run.ts calls these at each step; all no-ops unless telemetry is set up). One trace with the
// Functions app's spans: `job.run` is a child of the dispatch span whose traceparent came in the dispatch message.
import type { Span } from '@opentelemetry/api';
import type { AcquireResult } from './cache/cache-types.js';
import type { ClaimedLora, JobEventInput } from '../../contract/jobs.js';
import { endSpan, SpanKind, startSpan, traceparentOf } from './telemetry.js';

export class RunTrace {
  private readonly run: Span;
  private step: Span | undefined;

  constructor(jobId: string, epoch: number, machineId: string | undefined, traceparent: string | undefined) {
    this.run = startSpan('job.run', traceparent, SpanKind.CONSUMER, {
      'lora_router.job.id': jobId,
      'lora_router.job.epoch': epoch,
      ...(machineId ? { 'lora_router.machine.id': machineId } : {}),
    });
  }

  /** Starts `name` as a child of the run (ending any step still open) and returns its traceparent. */
  begin(name: 'job.claim' | 'lora.acquire' | 'job.execute' | 'job.report', attributes: Record<string, string | number | boolean> = {}): string | undefined {
    this.done();
    this.step = startSpan(name, traceparentOf(this.run), name === 'job.claim' || name === 'job.report' ? SpanKind.CLIENT : SpanKind.INTERNAL, attributes);
    return traceparentOf(this.step);
  }

  /** Ends the open step, as failed when `error` is given. */
  done(attributes: Record<string, string | number | boolean> = {}, error?: string): void {
    if (!this.step) return;
    this.step.setAttributes(attributes);
    endSpan(this.step, error);
    this.step = undefined;
  }

  /** The cache step's outcome: totals as attributes and one span event per LoRA (hit | miss, bytes). */
  cache(loras: readonly ClaimedLora[], a: AcquireResult): void {
    const hit = new Set(a.hit);
    for (const l of loras) {
      this.step?.addEvent(hit.has(l.key) ? 'lora.hit' : 'lora.miss', {
        'lora_router.lora.key': l.key,
        'lora_router.lora.kind': l.kind,
        'lora_router.lora.size_bytes': l.size_bytes,
      });
    }
    this.done({
      'lora_router.cache.hits': a.hit.length,
      'lora_router.cache.misses': a.missing.length,
      'lora_router.cache.bytes_downloaded': Math.round(a.bytesDownloaded),
      'lora_router.cache.download_ms': Math.round(a.downloadMs),
    });
  }

  outcome(event: JobEventInput | null): void {
    this.run.setAttribute('lora_router.job.outcome', event?.type ?? 'unreported');
  }

  end(kind: string, why?: string): void {
    this.done();
    this.run.setAttribute('lora_router.run.result', kind);
    endSpan(this.run, kind === 'unreported' ? why : undefined);
  }
}

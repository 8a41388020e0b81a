// The Functions app's one door to OpenTelemetry: span helpers, W3C trace-context carriers and the app's instruments.
// Only @opentelemetry/api is used here: with no SDK registered every call is a no-op, so the core runs the same in
// tests and in Azure. Which SDK and exporter run is decided once per process by adapters/telemetry-setup.ts.
//
// A job's trace: `job.submit` (root, its context stored on the job as `trace_parent`) → `job.place` (each tick that
// assigns it) → `job.dispatch` (its context travels in the dispatch message) → the agent's `job.run` → agent
// `job.claim` → server `job.claim.accept` (context in the claim body) → … → server `job.report` for started/outcome.
import {
  context,
  defaultTextMapGetter,
  defaultTextMapSetter,
  metrics,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
  type Attributes,
  type Context,
  type Counter,
  type Gauge,
  type Histogram,
  type Span,
} from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';

export const TELEMETRY_SCOPE = 'lora-router.functions';
const propagator = new W3CTraceContextPropagator();

/** A context whose parent is the given traceparent (or the root context when there is none / it is malformed). */
export function contextFromTraceparent(traceparent: string | null | undefined): Context {
  if (!traceparent) return ROOT_CONTEXT;
  return propagator.extract(ROOT_CONTEXT, { traceparent }, defaultTextMapGetter);
}

/** The W3C traceparent of a span, or undefined when the span is not sampled/recorded anywhere (no SDK). */
export function traceparentOf(span: Span): string | undefined {
  const carrier: Record<string, string> = {};
  propagator.inject(trace.setSpan(ROOT_CONTEXT, span), carrier, defaultTextMapSetter);
  return carrier.traceparent;
}

export const tracer = () => trace.getTracer(TELEMETRY_SCOPE);

/**
 * Runs `fn` inside a span that is a child of `parent` (a traceparent) or of the active context. Errors are recorded on
 * the span and rethrown. The span ends when `fn` settles.
 */
export async function inSpan<T>(
  name: string,
  opts: { parent?: string | null; kind?: SpanKind; attributes?: Attributes },
  fn: (span: Span) => Promise<T>,
): Promise<T> {
  const parentCtx = opts.parent !== undefined ? contextFromTraceparent(opts.parent) : context.active();
  return tracer().startActiveSpan(name, { kind: opts.kind ?? SpanKind.INTERNAL, attributes: opts.attributes }, parentCtx, async (span) => {
    try {
      return await fn(span);
    } catch (err) {
      span.recordException(err as Error);
      span.setStatus({ code: SpanStatusCode.ERROR, message: (err as Error)?.message });
      throw err;
    } finally {
      span.end();
    }
  });
}

export { SpanKind };

/** Score breakdown parts as span attributes: `lora_router.placement.breakdown.<part>`. */
export function breakdownAttributes(breakdown: Record<string, number> | null | undefined): Attributes {
  const out: Attributes = {};
  for (const [k, v] of Object.entries(breakdown ?? {})) out[`lora_router.placement.breakdown.${k}`] = v;
  return out;
}

/** How a job's LoRAs stood when it started: the split the ADR's start-latency metric is reported by. */
export type CacheState = 'all_hits' | 'some_misses' | 'all_misses' | 'no_loras';
export function cacheStateOf(hits: number, misses: number): CacheState {
  if (hits + misses === 0) return 'no_loras';
  if (misses === 0) return 'all_hits';
  return hits === 0 ? 'all_misses' : 'some_misses';
}

interface Instruments {
  jobsFinished: Counter;
  startLatency: Histogram;
  placementScore: Histogram;
  placementDelay: Histogram;
  dispatchSendFailures: Counter;
  dispatchDeadLetters: Counter;
  pendingBacklog: Gauge;
}

let instruments: Instruments | undefined;

/** The app's metric instruments (stable names; see docs/observability.md). Created on first use, after setup. */
export function appMetrics(): Instruments {
  if (instruments) return instruments;
  const m = metrics.getMeter(TELEMETRY_SCOPE);
  instruments = {
    jobsFinished: m.createCounter('lora_router.jobs.finished', { unit: '{job}', description: 'Jobs that reached a terminal status, by outcome' }),
    startLatency: m.createHistogram('lora_router.job.start_latency', {
      unit: 's',
      description: 'Submit → started, by cache state (all_hits | some_misses | all_misses | no_loras)',
    }),
    placementScore: m.createHistogram('lora_router.placement.score', { unit: '1', description: 'Affinity score of each placement, by policy' }),
    placementDelay: m.createHistogram('lora_router.placement.delay', { unit: 's', description: 'Submit (or retry) → assigned' }),
    dispatchSendFailures: m.createCounter('lora_router.dispatch.send_failures', { unit: '{message}', description: 'Dispatch messages that could not be sent' }),
    dispatchDeadLetters: m.createCounter('lora_router.dispatch.dead_letters', {
      unit: '{job}',
      description: 'Jobs given up after their attempts ran out (the job-level dead letter), by reason',
    }),
    pendingBacklog: m.createGauge('lora_router.pool.pending', { unit: '{job}', description: 'Pending jobs per pool seen by each scheduler pass' }),
  };
  return instruments;
}

/** For tests that install a fresh MeterProvider. */
export function resetAppMetrics(): void {
  instruments = undefined;
}

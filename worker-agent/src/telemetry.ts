// The agent's one door to OpenTelemetry. Off by default; chosen by settings:
//   TELEMETRY_EXPORTER=none (default) | console | otlp | azure-monitor
//   OTEL_EXPORTER_OTLP_ENDPOINT       base URL for otlp (traces to <url>/v1/traces, metrics to <url>/v1/metrics)
//   APPLICATIONINSIGHTS_CONNECTION_STRING  for azure-monitor
// A run's spans: `job.run` (child of the dispatch span whose traceparent came in the message) → `job.claim` (its
// traceparent goes in the claim body) → `lora.acquire` (an event per LoRA: hit | miss, bytes) → `job.execute` →
// `job.report`. Cache metrics are observable counters over the cache's own cumulative counters.
import { useAzureMonitor } from '@azure/monitor-opentelemetry';
import {
  defaultTextMapGetter,
  defaultTextMapSetter,
  metrics,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
  type Attributes,
  type Span,
} from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { OTLPMetricExporter } from '@opentelemetry/exporter-metrics-otlp-http';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { ConsoleMetricExporter, MeterProvider, PeriodicExportingMetricReader, type PushMetricExporter } from '@opentelemetry/sdk-metrics';
import { BatchSpanProcessor, ConsoleSpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { NodeTracerProvider } from '@opentelemetry/sdk-trace-node';
import { ATTR_SERVICE_NAME } from '@opentelemetry/semantic-conventions';
import { z } from 'zod';
import type { CacheInventory } from './cache/cache-types.js';
import { AgentConfigError } from './env-file.js';

export const AGENT_TELEMETRY_SCOPE = 'lora-router.agent';
const propagator = new W3CTraceContextPropagator();

export const telemetrySettingsSchema = z.object({
  TELEMETRY_EXPORTER: z.enum(['none', 'console', 'otlp', 'azure-monitor']).default('none'),
  OTEL_EXPORTER_OTLP_ENDPOINT: z.string().url().optional(),
  APPLICATIONINSIGHTS_CONNECTION_STRING: z.string().min(1).optional(),
  /** How often metrics are exported (ms). */
  OTEL_METRIC_EXPORT_INTERVAL: z.coerce.number().int().min(1000).default(60_000),
});

export interface AgentTelemetry {
  mode: 'none' | 'console' | 'otlp' | 'azure-monitor';
  /** Flushes and stops the exporters (agent shutdown). */
  shutdown(): Promise<void>;
}

/** Reads the telemetry settings; throws a message naming the bad one. */
export function telemetrySettings(env: NodeJS.ProcessEnv): z.infer<typeof telemetrySettingsSchema> {
  const parsed = telemetrySettingsSchema.safeParse(env);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new AgentConfigError(`Invalid setting ${issue.path.join('.')}: ${issue.message}`);
  }
  const s = parsed.data;
  if (s.TELEMETRY_EXPORTER === 'otlp' && !s.OTEL_EXPORTER_OTLP_ENDPOINT) throw new AgentConfigError('TELEMETRY_EXPORTER=otlp needs OTEL_EXPORTER_OTLP_ENDPOINT');
  if (s.TELEMETRY_EXPORTER === 'azure-monitor' && !s.APPLICATIONINSIGHTS_CONNECTION_STRING) {
    throw new AgentConfigError('TELEMETRY_EXPORTER=azure-monitor needs APPLICATIONINSIGHTS_CONNECTION_STRING');
  }
  return s;
}

export function setupAgentTelemetry(env: NodeJS.ProcessEnv, machineId: string): AgentTelemetry {
  const s = telemetrySettings(env);
  const resource = resourceFromAttributes({ [ATTR_SERVICE_NAME]: 'lora-router-agent', 'service.instance.id': machineId, 'lora_router.machine.id': machineId });
  switch (s.TELEMETRY_EXPORTER) {
    case 'none':
      return { mode: 'none', shutdown: async () => {} };
    case 'azure-monitor':
      useAzureMonitor({ azureMonitorExporterOptions: { connectionString: s.APPLICATIONINSIGHTS_CONNECTION_STRING }, resource });
      return { mode: 'azure-monitor', shutdown: async () => {} };
    default: {
      const otlp = s.TELEMETRY_EXPORTER === 'otlp';
      const base = s.OTEL_EXPORTER_OTLP_ENDPOINT?.replace(/\/$/, '');
      const tracerProvider = new NodeTracerProvider({
        resource,
        spanProcessors: [
          otlp ? new BatchSpanProcessor(new OTLPTraceExporter({ url: `${base}/v1/traces` }), { scheduledDelayMillis: 500 }) : new SimpleSpanProcessor(new ConsoleSpanExporter()),
        ],
      });
      tracerProvider.register();
      const exporter: PushMetricExporter = otlp ? new OTLPMetricExporter({ url: `${base}/v1/metrics` }) : new ConsoleMetricExporter();
      const meterProvider = new MeterProvider({
        resource,
        readers: [new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: s.OTEL_METRIC_EXPORT_INTERVAL })],
      });
      metrics.setGlobalMeterProvider(meterProvider);
      return {
        mode: s.TELEMETRY_EXPORTER,
        shutdown: async () => {
          await Promise.allSettled([tracerProvider.shutdown(), meterProvider.shutdown()]);
        },
      };
    }
  }
}

export const agentTracer = () => trace.getTracer(AGENT_TELEMETRY_SCOPE);

/** A span that is a child of the given traceparent (a new trace when there is none). */
export function startSpan(name: string, parent: string | undefined, kind: SpanKind = SpanKind.INTERNAL, attributes?: Attributes): Span {
  const ctx = parent ? propagator.extract(ROOT_CONTEXT, { traceparent: parent }, defaultTextMapGetter) : ROOT_CONTEXT;
  return agentTracer().startSpan(name, { kind, attributes }, ctx);
}

export function traceparentOf(span: Span): string | undefined {
  const carrier: Record<string, string> = {};
  propagator.inject(trace.setSpan(ROOT_CONTEXT, span), carrier, defaultTextMapSetter);
  return carrier.traceparent;
}

/** Ends a span, marking it failed when `error` is given. */
export function endSpan(span: Span, error?: string): void {
  if (error) span.setStatus({ code: SpanStatusCode.ERROR, message: error });
  span.end();
}

export { SpanKind };

/**
 * Observable cache metrics over the cache's cumulative counters and inventory (read at export time, so they cost
 * nothing between exports): lookups by result, bytes downloaded (egress), evictions, thrash, used vs budget bytes.
 */
export function registerCacheMetrics(inventory: () => CacheInventory | undefined): void {
  const m = metrics.getMeter(AGENT_TELEMETRY_SCOPE);
  const lookups = m.createObservableCounter('lora_router.lora.lookups', { unit: '{lookup}', description: 'Required-LoRA lookups in the machine cache, by result (hit | miss)' });
  const bytes = m.createObservableCounter('lora_router.lora.bytes_downloaded', { unit: 'By', description: 'Bytes downloaded from blob storage (egress)' });
  const downloads = m.createObservableCounter('lora_router.lora.downloads', { unit: '{download}', description: 'Completed LoRA downloads' });
  const evictions = m.createObservableCounter('lora_router.cache.evictions', { unit: '{lora}', description: 'LoRAs evicted to stay within the budget' });
  const thrash = m.createObservableCounter('lora_router.cache.thrash', { unit: '{lora}', description: 'Re-downloads soon after an eviction of the same LoRA' });
  const used = m.createObservableGauge('lora_router.cache.used', { unit: 'By', description: 'Bytes of cached LoRA files' });
  const budget = m.createObservableGauge('lora_router.cache.budget', { unit: 'By', description: 'The cache byte budget' });
  m.addBatchObservableCallback(
    (r) => {
      const inv = inventory();
      if (!inv) return;
      r.observe(lookups, inv.counters.hits, { 'lora_router.lora.result': 'hit' });
      r.observe(lookups, inv.counters.misses, { 'lora_router.lora.result': 'miss' });
      r.observe(bytes, inv.counters.bytes_downloaded);
      r.observe(downloads, inv.counters.downloads);
      r.observe(evictions, inv.counters.evictions);
      r.observe(thrash, inv.counters.thrash);
      r.observe(used, inv.usedBytes);
      r.observe(budget, inv.budgetBytes);
    },
    [lookups, bytes, downloads, evictions, thrash, used, budget],
  );
}

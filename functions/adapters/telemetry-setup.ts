// Chooses and registers the Functions app's OpenTelemetry SDK, once per process, from settings:
//   APPLICATIONINSIGHTS_CONNECTION_STRING set → the Azure Monitor distro (traces, metrics, logs to App Insights);
//   OTEL_EXPORTER_OTLP_ENDPOINT set           → OTLP/HTTP traces to `<endpoint>/v1/traces`;
//   LORA_ROUTER_TELEMETRY=console             → spans printed to stdout;
//   otherwise                                  → nothing registered (the API stays a no-op; tests may register their own).
// core/telemetry.ts holds the spans and instruments; only this file knows the SDK packages.
import { useAzureMonitor } from '@azure/monitor-opentelemetry';
import { trace } from '@opentelemetry/api';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BatchSpanProcessor, ConsoleSpanExporter, SimpleSpanProcessor, type SpanProcessor } from '@opentelemetry/sdk-trace-base';
import { NodeTracerProvider } from '@opentelemetry/sdk-trace-node';
import { ATTR_SERVICE_NAME } from '@opentelemetry/semantic-conventions';

export type TelemetryMode = 'azure-monitor' | 'otlp' | 'console' | 'off';

let chosen: TelemetryMode | undefined;

export function telemetryModeOf(env: NodeJS.ProcessEnv): TelemetryMode {
  if (env.APPLICATIONINSIGHTS_CONNECTION_STRING?.trim()) return 'azure-monitor';
  if (env.OTEL_EXPORTER_OTLP_ENDPOINT?.trim()) return 'otlp';
  if (env.LORA_ROUTER_TELEMETRY === 'console') return 'console';
  return 'off';
}

/** Idempotent. Returns the mode in effect. */
export function setupFunctionsTelemetry(env: NodeJS.ProcessEnv = process.env): TelemetryMode {
  if (chosen) return chosen;
  chosen = telemetryModeOf(env);
  if (chosen === 'azure-monitor') {
    // Functions on Flex Consumption: also set "telemetryMode": "OpenTelemetry" in host.json so the host's own spans
    // join the same traces (docs/observability.md).
    useAzureMonitor({ azureMonitorExporterOptions: { connectionString: env.APPLICATIONINSIGHTS_CONNECTION_STRING } });
    return chosen;
  }
  if (chosen === 'off') return chosen;
  const processor: SpanProcessor =
    chosen === 'otlp'
      ? new BatchSpanProcessor(new OTLPTraceExporter({ url: `${env.OTEL_EXPORTER_OTLP_ENDPOINT!.replace(/\/$/, '')}/v1/traces` }), {
          scheduledDelayMillis: 1000,
        })
      : new SimpleSpanProcessor(new ConsoleSpanExporter());
  const provider = new NodeTracerProvider({
    resource: resourceFromAttributes({ [ATTR_SERVICE_NAME]: env.OTEL_SERVICE_NAME ?? 'lora-router-functions' }),
    spanProcessors: [processor],
  });
  provider.register();
  return chosen;
}

/** Flushes buffered spans (dev host shutdown). */
export async function flushFunctionsTelemetry(): Promise<void> {
  const p = trace.getTracerProvider() as unknown as { forceFlush?: () => Promise<void>; getDelegate?: () => { forceFlush?: () => Promise<void> } };
  await (p.getDelegate?.().forceFlush?.() ?? p.forceFlush?.());
}

// Imported by every trigger file before it registers: request/response bodies are streams, so uploads of up to
// 100 MB and server-sent event streams never sit whole in memory. Idempotent (setup may run until startup ends).
// Telemetry is chosen here too, before any handler runs (adapters/telemetry-setup.ts).
import { app } from '@azure/functions';
import { setupFunctionsTelemetry } from './adapters/telemetry-setup.js';

setupFunctionsTelemetry();
app.setup({ enableHttpStream: true });

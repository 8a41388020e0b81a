// Imported by every trigger file before it registers: request/response bodies are streams, so uploads of up to
// 100 MB and server-sent event streams never sit whole in memory. Idempotent (setup may run until startup ends).
import { app } from '@azure/functions';

app.setup({ enableHttpStream: true });

// Dependency probes for GET /api/health. Reports up/down and a short reason, never endpoints or secrets.
import { dispatchSenderFor } from '../adapters/dispatch-sender.js';
import type { Services } from './services.js';

export interface DependencyStatus {
  status: 'up' | 'down';
  latency_ms: number;
  error?: string;
}

const PROBE_TIMEOUT_MS = 3_000;

async function probe(fn: () => Promise<unknown>): Promise<DependencyStatus> {
  const start = Date.now();
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      fn(),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error('timed out')), PROBE_TIMEOUT_MS);
      }),
    ]);
    return { status: 'up', latency_ms: Date.now() - start };
  } catch (err) {
    // Only the error's class/code: messages can carry URLs with account names.
    const e = err as { code?: string; statusCode?: number; name?: string; message?: string };
    const reason = e.message === 'timed out' ? 'timed out' : (e.code ?? (e.statusCode ? `HTTP ${e.statusCode}` : e.name ?? 'error'));
    return { status: 'down', latency_ms: Date.now() - start, error: String(reason) };
  } finally {
    clearTimeout(timer);
  }
}

export async function checkHealth(services: Services) {
  const { clients, config } = services;
  const sender = dispatchSenderFor(clients);
  const [blob, cosmos, transport] = await Promise.all([
    probe(() => clients.blobService.getContainerClient(config.userLoraContainer).getProperties()),
    probe(() => clients.cosmosContainers.database.read()),
    probe(() => sender.health()),
  ]);
  const dependencies = { blob, cosmos, transport };
  const up = Object.values(dependencies).every((d) => d.status === 'up');
  return { status: up ? 'ok' : 'degraded', mode: config.mode, transport: config.transport, dependencies };
}

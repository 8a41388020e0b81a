// Version skew, the agent's side (docs/agent-runbook.md "Rolling upgrade"): an agent talking to a newer control plane
// ignores answer fields it does not know, also inside the cache orders. A loopback HTTP server plays that control plane;
// the control plane's side (older and newer agents) is test/integration/fleet-ops.test.ts.
import { createServer, type Server } from 'node:http';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HttpControlPlane } from './api.js';

let server: Server;
let url: string;

beforeAll(async () => {
  server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          ok: true,
          stop_jobs: [{ job_id: 'job_01hzzzzzzzzzzzzzzzzzzzzzzz', epoch: 3, reason: 'a field from the future' }],
          admin_drained: false,
          evict: [{ kind: 'shared', key: 'old.safetensors', priority: 'high' }],
          prewarm: [{ kind: 'user', key: 'lora_x', size_bytes: 1, sha256: 'ab', download_url: 'http://127.0.0.1/x', region: 'west' }],
          reboot_window: { start: '02:00' },
        }),
      );
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  url = `http://127.0.0.1:${(server.address() as { port: number }).port}/api`;
});
afterAll(async () => {
  await new Promise<void>((r) => server.close(() => r()));
});

const hb = { pool: 'p', slots: 1, running_jobs: [], cached_loras: { user: [], shared: [] }, cache: { budget_bytes: 0, used_bytes: 0, free_disk_bytes: 0, counters: { hits: 0, misses: 0, downloads: 0, bytes_downloaded: 0, evictions: 0, thrash: 0 } }, draining: false, receiving: true };

describe('an agent against a newer control plane', () => {
  it('takes the answer, orders included, and drops the fields it does not know', async () => {
    const api = new HttpControlPlane({ baseUrl: url, token: 't', machineId: 'm1', log: pino({ level: 'silent' }) });
    const answer = await api.heartbeat(hb, { retries: 0 });
    expect(answer.ok).toBe(true);
    if (!answer.ok) return;
    expect(answer.value.stop_jobs).toEqual([{ job_id: 'job_01hzzzzzzzzzzzzzzzzzzzzzzz', epoch: 3 }]);
    expect(answer.value.evict).toEqual([{ kind: 'shared', key: 'old.safetensors' }]);
    expect(answer.value.prewarm?.[0]).not.toHaveProperty('region');
    expect(answer.value).not.toHaveProperty('reboot_window');
  });
});

// The agent switches to the token a heartbeat hands out and keeps it for restarts. A loopback HTTP server plays the
// control plane's heartbeat endpoint (the real one is covered in test/integration/machines.test.ts).
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HttpControlPlane } from './api.js';
import { TokenStore, tokenExpiry } from './token-store.js';

const jwt = (exp: number) => `${Buffer.from('{"alg":"HS256"}').toString('base64url')}.${Buffer.from(JSON.stringify({ exp })).toString('base64url')}.sig`;
const now = Math.floor(Date.now() / 1000);
const T1 = jwt(now + 3600);
const T2 = jwt(now + 86_400);

let server: Server;
let url: string;
const seen: string[] = [];
let dir: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'token-rotation-'));
  server = createServer((req, res) => {
    seen.push(req.headers.authorization ?? '');
    req.resume();
    req.on('end', () => {
      const rotate = seen.length === 1;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ ok: true, stop_jobs: [], ...(rotate ? { machine_token: { token: T2, expires_at: new Date((now + 86_400) * 1000).toISOString() } } : {}) }));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  url = `http://127.0.0.1:${(server.address() as { port: number }).port}/api`;
});
afterAll(async () => {
  await new Promise<void>((r) => server.close(() => r()));
  rmSync(dir, { recursive: true, force: true });
});

const hb = { pool: 'p', slots: 1, running_jobs: [], cached_loras: { user: [], shared: [] }, cache: { budget_bytes: 0, used_bytes: 0, free_disk_bytes: 0, counters: { hits: 0, misses: 0, downloads: 0, bytes_downloaded: 0, evictions: 0, thrash: 0 } }, draining: false };

describe('machine token self-rotation', () => {
  it('uses the rotated token from then on and keeps it (0600) for a restart', async () => {
    const store = new TokenStore(dir);
    const api = new HttpControlPlane({ baseUrl: url, token: store.pick(T1), machineId: 'm1', log: pino({ level: 'silent' }), onTokenRotated: (t) => store.save(t) });
    expect((await api.heartbeat(hb, { retries: 0 })).ok).toBe(true);
    expect((await api.heartbeat(hb, { retries: 0 })).ok).toBe(true);
    expect(seen).toEqual([`Bearer ${T1}`, `Bearer ${T2}`]);
    // A restart with the original (older) token configured picks the rotated one.
    expect(new TokenStore(dir).pick(T1)).toBe(T2);
    expect(statSync(join(dir, 'machine-token')).mode & 0o777).toBe(0o600);
    // A newly configured token that outlives the stored one (re-registration) wins.
    const T3 = jwt(now + 2 * 86_400);
    expect(new TokenStore(dir).pick(T3)).toBe(T3);
    expect(tokenExpiry('garbage')).toBe(0);
  });
});

// The dev host's own HTTP surface: admin API auth and body handling, malformed URLs, empty-body POSTs. Real HTTP on
// loopback against trigger files written for the test (inside the repo, so they resolve @azure/functions).
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { Agent } from 'node:http';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { getOn, sendPastAnswer } from '../test/support/send-past-answer.js';
import { startDevHost, type DevHost } from './dev-host.js';
import { DRAIN_LIMIT_BYTES } from './request-body.js';

const KEY = 'test-admin-key-0123456789';
let dir: string;
let host: DevHost;
let ran = 0;

beforeAll(async () => {
  mkdirSync(join(process.cwd(), '.local'), { recursive: true });
  dir = mkdtempSync(join(process.cwd(), '.local', 'dev-host-test-'));
  writeFileSync(
    join(dir, 'triggers.js'),
    `import { app } from '@azure/functions';
app.http('echo', { route: 'echo', methods: ['POST'], handler: async (req) => ({ status: 200, jsonBody: { length: (await req.text()).length } }) });
app.http('noread', { route: 'noread/{id}', methods: ['GET', 'POST'], handler: async (req) => ({ status: 200, jsonBody: { id: req.params.id } }) });
app.http('cancel', { route: 'cancel', methods: ['POST'], handler: async (req) => {
  const reader = req.body.getReader();
  await reader.read();
  await reader.cancel();
  return { status: 413, jsonBody: { error: { code: 'too_large', message: 'stopped after the first chunk' } } };
} });
app.timer('tick', { schedule: '0 0 0 1 1 *', handler: async () => { globalThis.__ticks = (globalThis.__ticks ?? 0) + 1; } });
`,
  );
  host = await startDevHost({ port: 0, triggersDir: dir, routePrefix: 'api', timers: false, log: pino({ level: 'silent' }), settings: {}, adminKey: KEY });
});

afterAll(async () => {
  await host?.close();
  rmSync(dir, { recursive: true, force: true });
});

// A generous guard so a hang fails the test instead of the run; not a speed assertion.
const guard = () => AbortSignal.timeout(20_000);
const ticks = () => ((globalThis as { __ticks?: number }).__ticks ?? 0);

describe('admin API', () => {
  it('needs the host key', async () => {
    const none = await fetch(`${host.url}/admin/functions/tick`, { method: 'POST', body: '{}', signal: guard() });
    expect(none.status).toBe(401);
    expect(await none.json()).toMatchObject({ error: { code: 'unauthorized' } });
    const wrong = await fetch(`${host.url}/admin/functions/tick`, { method: 'POST', body: '{}', headers: { 'x-functions-key': 'x'.repeat(KEY.length) }, signal: guard() });
    expect(wrong.status).toBe(401);
    expect(ticks()).toBe(0);
    const ok = await fetch(`${host.url}/admin/functions/tick`, { method: 'POST', body: '{}', headers: { 'x-functions-key': KEY }, signal: guard() });
    expect(ok.status).toBe(202);
    expect(ticks()).toBe(1);
  });

  it('answers a bad body with a 4xx JSON error', async () => {
    for (const body of ['{', '[1]', '"x"']) {
      const res = await fetch(`${host.url}/admin/functions/tick`, { method: 'POST', body, headers: { 'x-functions-key': KEY }, signal: guard() });
      expect(res.status, body).toBe(400);
      expect(await res.json()).toMatchObject({ error: { code: 'invalid_request' } });
    }
  });

  it('stops a chunked admin body at the limit', async () => {
    let sent = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(c) {
        if (sent >= 8 * 1024 * 1024) return c.close();
        sent += 64 * 1024;
        c.enqueue(new Uint8Array(64 * 1024).fill(0x20));
      },
    });
    const res = await fetch(`${host.url}/admin/functions/tick`, { method: 'POST', body, duplex: 'half', headers: { 'x-functions-key': KEY }, signal: guard() } as RequestInit);
    expect(res.status).toBe(413);
  });
});

describe('HTTP routes', () => {
  it('answers a malformed % escape with a 400', async () => {
    const res = await fetch(`${host.url}/api/noread/%E0%A4%A`, { signal: guard() });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ error: { code: 'invalid_request' } });
  });

  it('answers POSTs with an empty body, read or not', async () => {
    for (let i = 0; i < 4; i++) {
      const a = await fetch(`${host.url}/api/noread/${i}`, { method: 'POST', signal: guard() });
      expect(a.status).toBe(200);
      expect(await a.json()).toEqual({ id: String(i) });
      const b = await fetch(`${host.url}/api/echo`, { method: 'POST', signal: guard() });
      expect(await b.json()).toEqual({ length: 0 });
    }
  });
});

describe('web app address', () => {
  it('sends /app/… to the app under the route prefix, query kept; other paths stay 404', async () => {
    const res = await fetch(`${host.url}/app/jobs/job_1?x=1`, { redirect: 'manual', signal: guard() });
    expect(res.status).toBe(302);
    expect(res.headers.get('location')).toBe('/api/app/jobs/job_1?x=1');
    const bare = await fetch(`${host.url}/app`, { redirect: 'manual', signal: guard() });
    expect(bare.headers.get('location')).toBe('/api/app');
    expect((await fetch(`${host.url}/apple`, { redirect: 'manual', signal: guard() })).status).toBe(404);
  });
});

describe('a body the trigger did not read', () => {
  // Bigger than the loopback socket buffers, so an unread remainder would stall the client.
  const REST = 32 * 1024 * 1024;
  let agent: Agent;
  beforeEach(() => {
    agent = new Agent({ keepAlive: true, maxSockets: 1 });
  });
  afterEach(() => agent.destroy());

  it('is drained after the answer: the client finishes sending, sees the answer, and the connection is reused', async () => {
    const first = Buffer.alloc(64 * 1024, 0x61);
    const sent = await sendPastAnswer(`${host.url}/api/noread/1`, agent, { 'content-length': first.length + REST }, first, REST);
    expect(sent).toMatchObject({ status: 200, body: { id: '1' } });
    expect(await getOn(`${host.url}/api/noread/2`, agent)).toMatchObject({ status: 200, reused: true });
  });

  it('is drained after the trigger cancels its body stream (a chunked body over a limit), not reset', async () => {
    const first = Buffer.alloc(256 * 1024, 0x61);
    const sent = await sendPastAnswer(`${host.url}/api/cancel`, agent, { 'transfer-encoding': 'chunked' }, first, REST);
    expect(sent).toMatchObject({ status: 413, body: { error: { code: 'too_large' } } });
    expect(await getOn(`${host.url}/api/noread/3`, agent)).toMatchObject({ status: 200, reused: true });
  });

  it('is not waited for when declared longer than the host drains: the answer says the connection closes', async () => {
    const res = await fetch(`${host.url}/api/noread/4`, {
      method: 'POST',
      headers: { 'content-length': String(DRAIN_LIMIT_BYTES + 1) },
      // Only the first bytes are sent: the answer must not wait for the rest.
      body: new ReadableStream({ start: (c) => c.enqueue(new Uint8Array(1024)) }),
      duplex: 'half',
      signal: guard(),
    } as RequestInit);
    expect(res.status).toBe(200);
    expect(res.headers.get('connection')).toBe('close');
    expect(await res.json()).toEqual({ id: '4' });
  });
});

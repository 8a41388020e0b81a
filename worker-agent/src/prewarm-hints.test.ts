// The agent's pre-warm hints over the real LoraCache (SQLite, files, verified downloads) and a loopback blob server.
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PrewarmItem } from '../../contract/machines.js';
import { TestBlobServer } from '../../testkit/blob-server.js';
import { LoraCache } from './cache/lora-cache.js';
import { PrewarmHints } from './prewarm-hints.js';

const server = new TestBlobServer();
const dirs: string[] = [];
let seq = 0;
const KIB = 1024;
const log = pino({ level: process.env.HINT_TEST_LOG ?? 'silent' });

beforeAll(async () => {
  await server.start();
});
afterAll(async () => {
  await server.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function hint(size: number): PrewarmItem & { name: string } {
  const data = randomBytes(size);
  const name = `h${++seq}`;
  server.put(name, data);
  return { kind: 'user', key: `lora_${String(seq).padStart(26, '0')}`, size_bytes: size, sha256: createHash('sha256').update(data).digest('hex'), download_url: server.url(name), hint: true, name };
}

async function openCache(budget: number, clock = Date.now): Promise<LoraCache> {
  const dir = mkdtempSync(join(tmpdir(), 'prewarm-hints-'));
  dirs.push(dir);
  const cache = new LoraCache({ cacheDir: dir, budgetBytes: budget, clock, download: { retries: 1, minRetryDelayMs: 1, maxRetryDelayMs: 5, stallTimeoutMs: 60_000 } });
  await cache.open();
  return cache;
}

describe('pre-warm hints on the agent', () => {
  it('waits while a job downloads, then fetches within the budget', async () => {
    const cache = await openCache(1024 * KIB);
    let busy = true;
    const hints = new PrewarmHints({ cache, log, signal: new AbortController().signal, jobDownloading: () => busy, minIdleEvictMs: 0, pollMs: 10 });
    const h = hint(100 * KIB);
    hints.offer(h);
    await new Promise((r) => setTimeout(r, 100));
    expect(server.requestsFor(h.name)).toEqual([]); // nothing on the link while a job downloads
    busy = false;
    await hints.idle();
    expect(hints.stats).toMatchObject({ fetched: 1, declined: 0 });
    expect(cache.has(h.key)).toBe(true);
    expect(cache.inUseCount(h.key)).toBe(0); // released: evictable like any entry
    await cache.close();
  });

  it('gives the link back to a job and resumes from the partial file', async () => {
    const cache = await openCache(1024 * KIB);
    const hints = new PrewarmHints({ cache, log, signal: new AbortController().signal, jobDownloading: () => false, minIdleEvictMs: 0, pollMs: 10 });
    const h = hint(300 * KIB);
    server.behave(h.name, { stallAfterBytes: 100 * KIB });
    hints.offer(h);
    await server.waitForRequests(h.name, 1);
    await new Promise((r) => setTimeout(r, 100));
    hints.yieldLink();
    await hints.idle();
    expect(hints.stats).toMatchObject({ fetched: 1, failed: 0 });
    expect(hints.stats.yielded).toBeGreaterThanOrEqual(1);
    expect(cache.has(h.key)).toBe(true);
    const reqs = server.requestsFor(h.name);
    expect(reqs.length).toBe(2);
    expect(reqs[0]!.range).toBeNull();
    expect(reqs[1]!.range).toMatch(/^bytes=[1-9]\d*-$/); // resumed, not started over
    await cache.close();
  });

  it('declines a hint that would evict a recently used LoRA; with no idle minimum it evicts it like a job would', async () => {
    let now = 1_000_000;
    const cache = await openCache(300 * KIB, () => now);
    const used = hint(200 * KIB);
    (await cache.acquire([used])).release(); // used at `now`
    const strict = new PrewarmHints({ cache, log, signal: new AbortController().signal, jobDownloading: () => false, minIdleEvictMs: 60_000, clock: () => now });
    const h = hint(150 * KIB);
    now += 30_000;
    strict.offer(h);
    await strict.idle();
    expect(strict.stats).toMatchObject({ declined: 1, fetched: 0 });
    expect(cache.has(used.key)).toBe(true);
    expect(cache.has(h.key)).toBe(false);
    now += 60_000; // now idle long enough
    strict.offer(h);
    await strict.idle();
    expect(strict.stats).toMatchObject({ declined: 1, fetched: 1 });
    expect(cache.has(used.key)).toBe(false);
    expect(cache.inventory().usedBytes).toBeLessThanOrEqual(300 * KIB);
    await cache.close();
  });

  it('declines what pinned and in-use LoRAs leave no room for, and drops hints past their TTL', async () => {
    let now = 5_000_000;
    const cache = await openCache(300 * KIB, () => now);
    const held = hint(200 * KIB);
    const lease = await cache.acquire([held]); // a running job holds it
    const hints = new PrewarmHints({ cache, log, signal: new AbortController().signal, jobDownloading: () => false, minIdleEvictMs: 0, clock: () => now });
    hints.offer(hint(150 * KIB));
    await hints.idle();
    expect(hints.stats).toMatchObject({ declined: 1, fetched: 0 });
    expect(cache.has(held.key)).toBe(true);
    lease.release();
    let busy = true;
    const late = new PrewarmHints({ cache, log, signal: new AbortController().signal, jobDownloading: () => busy, minIdleEvictMs: 0, pollMs: 5, ttlMs: 1_000, clock: () => now });
    late.offer(hint(10 * KIB));
    now += 2_000;
    busy = false;
    await late.idle();
    expect(late.stats).toMatchObject({ dropped: 1, fetched: 0 });
    await cache.close();
  });
});

import Database from 'better-sqlite3';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, truncateSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ClaimedLora } from '../../../contract/jobs.js';
import { IntegrityError, TransientDownloadError } from '../download/download.js';
import { TestBlobServer } from '../../../testkit/blob-server.js';
import { CacheFullError, InvalidLoraError, LoraCache, type AcquireResult, type LoraCacheOptions } from './lora-cache.js';
import { seededRandom } from '../../../testkit/scheduler-inputs.js';

const server = new TestBlobServer();
const dirs: string[] = [];
let blobSeq = 0;

beforeAll(async () => {
  await server.start();
});
afterAll(async () => {
  await server.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

/** A valid flat_file_id: lora_ + 26 chars of [0-9a-z]. */
const userKey = (i: number): string => `lora_${i.toString(36).padStart(26, '0')}`;

/** Puts a blob of `size` random bytes on the server and returns the claim the control plane would send. */
function lora(kind: 'user' | 'shared', key: string, size: number): ClaimedLora & { data: Buffer } {
  const data = randomBytes(size);
  const name = `b${++blobSeq}`;
  server.put(name, data);
  return {
    kind,
    key,
    size_bytes: size,
    sha256: createHash('sha256').update(data).digest('hex'),
    download_url: server.url(name),
    data,
  };
}
const blobName = (l: ClaimedLora): string => new URL(l.download_url).pathname.split('/').pop()!;

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'lora-cache-test-'));
  dirs.push(d);
  return d;
}

function makeCache(opts: Partial<LoraCacheOptions> = {}): LoraCache {
  return new LoraCache({
    cacheDir: opts.cacheDir ?? tempDir(),
    budgetBytes: 1024 * 1024,
    download: { retries: 1, minRetryDelayMs: 1, maxRetryDelayMs: 5, writeChunkBytes: 16 * 1024 },
    ...opts,
  });
}

/** Bytes actually on disk under loras/ and partial/. */
function dirBytes(cacheDir: string): number {
  let total = 0;
  for (const sub of ['loras/user', 'loras/shared', 'partial']) {
    const d = join(cacheDir, sub);
    if (!existsSync(d)) continue;
    for (const f of readdirSync(d)) total += statSync(join(d, f)).size;
  }
  return total;
}

function filesIn(cacheDir: string, sub: string): string[] {
  const d = join(cacheDir, sub);
  return existsSync(d) ? readdirSync(d).sort() : [];
}

/** Reads the DB through a separate connection, as an operator's tool would. */
function query<T>(cacheDir: string, sql: string, ...params: unknown[]): T[] {
  const db = new Database(join(cacheDir, 'cache.db'), { readonly: true });
  try {
    return db.prepare(sql).all(...params) as T[];
  } finally {
    db.close();
  }
}
const dbUsedBytes = (cacheDir: string): number =>
  query<{ total: number | null }>(cacheDir, 'SELECT SUM(size_bytes) AS total FROM loras')[0]!.total ?? 0;


describe('LoraCache', () => {
  it('keeps the byte budget over a long random workload (DB and directory), never evicting pinned or in-use entries', async () => {
    const rnd = seededRandom(20251114);
    const budget = 256 * 1024;
    const catalog: (ClaimedLora & { data: Buffer })[] = [];
    for (let i = 0; i < 45; i++) catalog.push(lora('user', userKey(i), 4096 + Math.floor(rnd() * 44 * 1024)));
    for (let i = 0; i < 5; i++) catalog.push(lora('shared', `shared-${i}.safetensors`, 4096 + Math.floor(rnd() * 28 * 1024)));
    const pinned = ['shared-0.safetensors', 'shared-1.safetensors'];
    const cacheDir = tempDir();
    let now = Date.now();
    const opts = { cacheDir, budgetBytes: budget, pinned, clock: () => (now += 1) };
    let cache = makeCache(opts);
    await cache.open();
    const reader = new Database(join(cacheDir, 'cache.db'), { readonly: true });
    const readUsed = reader.prepare('SELECT SUM(size_bytes) AS total FROM loras');

    const violations: string[] = [];
    const checkBudget = (where: string): void => {
      const inv = cache.inventory();
      const onDisk = dirBytes(cacheDir);
      if (inv.usedBytes + inv.reservedBytes > budget) violations.push(`${where}: accounted ${inv.usedBytes}+${inv.reservedBytes}`);
      if (onDisk > budget) violations.push(`${where}: ${onDisk} bytes on disk`);
    };
    const held: AcquireResult[] = [];
    const outcomes = { ok: 0, full: 0, integrity: 0, transient: 0 };

    for (let step = 0; step < 2000; step++) {
      if (step === 1000) {
        // Restart half-way: everything persisted must come back consistent.
        for (const h of held.splice(0)) h.release();
        await cache.close();
        cache = makeCache(opts);
        await cache.open();
      }
      if (held.length > 0 && (rnd() < 0.45 || held.length >= 4)) {
        held.splice(Math.floor(rnd() * held.length), 1)[0]!.release();
      } else {
        const batch = 1 + Math.floor(rnd() * 2);
        const jobs: Promise<void>[] = [];
        for (let j = 0; j < batch; j++) {
          const need = new Map<string, ClaimedLora>();
          const count = 1 + Math.floor(rnd() * 3);
          while (need.size < count) {
            const l = catalog[Math.floor(rnd() * catalog.length)]!;
            need.set(l.key, l);
          }
          // Now and then the network misbehaves.
          const r = rnd();
          const victim = [...need.values()][0]!;
          if (r < 0.03) server.behave(blobName(victim), { cutAfterBytes: 2048 });
          else if (r < 0.04) server.behave(blobName(victim), { corrupt: true });
          jobs.push(
            cache.acquire([...need.values()], undefined, () => checkBudget(`step ${step} progress`)).then(
              (res) => {
                outcomes.ok++;
                held.push(res);
              },
              (err: unknown) => {
                if (err instanceof CacheFullError) outcomes.full++;
                else if (err instanceof IntegrityError) outcomes.integrity++;
                else if (err instanceof TransientDownloadError) outcomes.transient++;
                else throw err;
              },
            ),
          );
        }
        await Promise.all(jobs);
      }

      checkBudget(`step ${step}`);
      expect(violations).toEqual([]);
      const inv = cache.inventory();
      expect((readUsed.get() as { total: number | null }).total ?? 0).toBe(inv.usedBytes);
      // Everything a held job needs is still there, complete.
      for (const h of held) {
        for (const [key, path] of Object.entries(h.paths)) {
          const want = catalog.find((c) => c.key === key)!;
          expect(statSync(path).size).toBe(want.size_bytes);
        }
      }
    }
    for (const h of held.splice(0)) h.release();

    // Directory and DB agree exactly: one file per row, same size.
    const rows = query<{ key: string; kind: string; size_bytes: number }>(cacheDir, 'SELECT key, kind, size_bytes FROM loras');
    const files = [...filesIn(cacheDir, 'loras/user').map((f) => f.replace(/\.safetensors$/, '')), ...filesIn(cacheDir, 'loras/shared')];
    expect(files.sort()).toEqual(rows.map((r) => r.key).sort());
    for (const r of rows) expect(statSync(cache.pathFor(r.kind as 'user' | 'shared', r.key)).size).toBe(r.size_bytes);
    // The workload really exercised the hard paths.
    const counters = cache.inventory().counters;
    expect(counters.evictions).toBeGreaterThan(50);
    expect(counters.hits).toBeGreaterThan(50);
    expect(outcomes.full).toBeGreaterThan(0);
    expect(outcomes.ok).toBeGreaterThan(500);
    // Pinned keys were never evicted.
    const evictedKeys = query<{ key: string }>(cacheDir, 'SELECT DISTINCT key FROM evictions').map((r) => r.key);
    for (const p of pinned) expect(evictedKeys).not.toContain(p);
    reader.close();
    await cache.close();
    expect(dbUsedBytes(cacheDir)).toBeLessThanOrEqual(budget);
  }, 300_000); // a generous ceiling for a slow shared machine, not a performance assertion

  it('never evicts pinned or in-use entries, and throws CacheFullError when nothing else can go', async () => {
    const K = 1024;
    const sys = lora('shared', 'system-detail.safetensors', 30 * K);
    const [b, c, d, e] = [1, 2, 3, 4].map((i) => lora('user', userKey(100 + i), 30 * K));
    const cache = makeCache({ budgetBytes: 100 * K, pinned: [sys.key] });
    await cache.open();

    (await cache.acquire([sys])).release();
    const holdB = await cache.acquire([b!]);
    (await cache.acquire([c!])).release();
    // 90 KiB used; d needs 30: the only candidate is c (sys is pinned, b is in use), even though sys is older.
    const holdD = await cache.acquire([d!]);
    expect(cache.has(c!.key)).toBe(false);
    expect([sys.key, b!.key, d!.key].every((k) => cache.has(k))).toBe(true);

    // Now sys pinned + b and d in use = 90 KiB: e cannot fit.
    const err = await cache.acquire([e!]).catch((x: unknown) => x);
    expect(err).toBeInstanceOf(CacheFullError);
    expect((err as Error).message).toMatch(/^cache full: need 30 KiB, budget 100 KiB, 90 KiB pinned or in use/);
    expect(cache.inUseCount(e!.key)).toBe(0); // what was marked is released
    expect(server.requestsFor(blobName(e!))).toHaveLength(0); // room is made before any byte moves
    expect(filesIn(cache.cacheDir, 'loras/user')).not.toContain(`${e!.key}.safetensors`);

    // A job whose own LoRAs exceed the budget fails the same way, releasing what it marked.
    const err2 = await cache.acquire([b!, e!]).catch((x: unknown) => x);
    expect(err2).toBeInstanceOf(CacheFullError);
    expect(cache.inUseCount(b!.key)).toBe(1); // only holdB's mark is left

    holdD.release();
    holdD.release(); // idempotent
    expect(cache.inUseCount(d!.key)).toBe(0);
    const holdE = await cache.acquire([e!]);
    expect(cache.has(d!.key)).toBe(false);
    expect(cache.has(sys.key) && cache.has(b!.key)).toBe(true);
    holdE.release();
    holdB.release();

    const tooBig = lora('user', userKey(199), 101 * K);
    await expect(cache.acquire([tooBig])).rejects.toThrow(/larger than the whole budget/);
    await cache.close();
  });

  it('TTL sweep removes only stale, unpinned, unused entries', async () => {
    let now = 1_000_000_000_000;
    const cache = makeCache({ clock: () => now, ttlMs: 7 * DAY, pinned: ['pinned.safetensors'] });
    await cache.open();
    const stale = lora('user', userKey(200), 1000);
    const pinned = lora('shared', 'pinned.safetensors', 1000);
    const busy = lora('user', userKey(201), 1000);
    const fresh = lora('user', userKey(202), 1000);
    (await cache.acquire([stale, pinned])).release();
    const holdBusy = await cache.acquire([busy]);
    now += 6 * DAY;
    (await cache.acquire([fresh])).release();
    now += 2 * DAY; // stale/pinned/busy last used 8 days ago, fresh 2 days ago

    expect(cache.sweepTtl()).toEqual([stale.key]);
    expect(cache.has(stale.key)).toBe(false);
    expect(existsSync(cache.pathFor('user', stale.key))).toBe(false);
    expect([pinned.key, busy.key, fresh.key].every((k) => cache.has(k))).toBe(true);
    expect(cache.inventory().counters.evictions).toBe(1);

    // Release marks the end of use: busy is fresh again afterwards.
    holdBusy.release();
    now += 6 * DAY;
    expect(cache.sweepTtl()).toEqual([fresh.key]);
    expect(cache.inventory().user).toEqual([busy.key]);
    await cache.close();
  });

  it('resumes a download cut half-way from its partial file', async () => {
    const cache = makeCache({ download: { retries: 0, writeChunkBytes: 16 * 1024 } });
    await cache.open();
    const l = lora('user', userKey(300), 512 * 1024);
    server.behave(blobName(l), { cutAfterBytes: 256 * 1024 });
    await expect(cache.acquire([l])).rejects.toBeInstanceOf(TransientDownloadError);
    expect(cache.has(l.key)).toBe(false);
    expect(cache.inUseCount(l.key)).toBe(0);
    const partials = filesIn(cache.cacheDir, 'partial');
    expect(partials).toHaveLength(1);
    const partialSize = statSync(join(cache.cacheDir, 'partial', partials[0]!)).size;
    expect(partialSize).toBeGreaterThan(0);
    expect(partialSize).toBeLessThan(l.size_bytes);
    expect(cache.inventory().reservedBytes).toBe(partialSize); // a leftover partial still counts against the budget

    const res = await cache.acquire([l]);
    const reqs = server.requestsFor(blobName(l));
    expect(reqs).toHaveLength(2);
    expect(reqs[1]!.range).toBe(`bytes=${partialSize}-`);
    expect(res.missing).toEqual([l.key]);
    expect(res.bytesDownloaded).toBe(l.size_bytes - partialSize);
    expect(readFileSync(res.paths[l.key]!).equals(l.data)).toBe(true);
    expect(filesIn(cache.cacheDir, 'partial')).toEqual([]);
    res.release();
    await cache.close();
  });

  it('never registers a corrupt download and leaves no file in loras/', async () => {
    const cache = makeCache();
    await cache.open();
    const good = lora('user', userKey(400), 10_000);
    const bad = lora('user', userKey(401), 200_000);
    server.behave(blobName(bad), { corrupt: true });
    const err = await cache.acquire([good, bad]).catch((x: unknown) => x);
    expect(err).toBeInstanceOf(IntegrityError);
    expect(cache.has(bad.key)).toBe(false);
    expect(filesIn(cache.cacheDir, 'loras/user')).not.toContain(`${bad.key}.safetensors`);
    expect(filesIn(cache.cacheDir, 'partial')).toEqual([]);
    expect(query(cache.cacheDir, 'SELECT key FROM loras WHERE key = ?', bad.key)).toEqual([]);
    expect(cache.inUseCount(bad.key)).toBe(0);
    expect(cache.inUseCount(good.key)).toBe(0);

    // The next attempt gets good bytes and succeeds.
    const res = await cache.acquire([bad]);
    expect(readFileSync(res.paths[bad.key]!).equals(bad.data)).toBe(true);
    res.release();
    await cache.close();
  });

  it('shares one download between concurrent acquires of the same key', async () => {
    const cache = makeCache();
    await cache.open();
    const l = lora('user', userKey(500), 300_000);
    server.hold();
    const a = cache.acquire([l]);
    const b = cache.acquire([l]);
    await server.waitForRequests(blobName(l), 1);
    server.release();
    const [ra, rb] = await Promise.all([a, b]);
    expect(server.requestsFor(blobName(l))).toHaveLength(1);
    expect(ra.paths[l.key]).toBe(rb.paths[l.key]);
    expect(ra.missing).toEqual([l.key]);
    expect(rb.missing).toEqual([l.key]);
    expect(ra.bytesDownloaded + rb.bytesDownloaded).toBe(l.size_bytes); // counted once
    expect(cache.inUseCount(l.key)).toBe(2);
    const c = cache.inventory().counters;
    expect(c.downloads).toBe(1);
    expect(c.misses).toBe(2);
    expect(c.bytes_downloaded).toBe(l.size_bytes);
    ra.release();
    rb.release();
    expect(cache.inUseCount(l.key)).toBe(0);
    await cache.close();
  });

  it('keeps a shared download going when one of its waiters is cancelled', async () => {
    const cache = makeCache();
    await cache.open();
    const l = lora('user', userKey(501), 100_000);
    server.hold();
    const ac = new AbortController();
    const a = cache.acquire([l], ac.signal);
    const b = cache.acquire([l]);
    await server.waitForRequests(blobName(l), 1);
    ac.abort(new Error('job cancelled'));
    await expect(a).rejects.toThrow('job cancelled');
    server.release();
    const rb = await b;
    expect(readFileSync(rb.paths[l.key]!).equals(l.data)).toBe(true);
    expect(server.requestsFor(blobName(l))).toHaveLength(1);
    expect(cache.inUseCount(l.key)).toBe(1);
    rb.release();
    await cache.close();
  });

  it('reconciles on open: stray files deleted, rows without files removed, in_use reset, young partials kept', async () => {
    const cacheDir = tempDir();
    const first = makeCache({ cacheDir });
    await first.open();
    const keep = lora('user', userKey(600), 5000);
    const gone = lora('user', userKey(601), 5000);
    const shrunk = lora('shared', 'shrunk.safetensors', 5000);
    const busy = lora('shared', 'busy.safetensors', 5000);
    (await first.acquire([keep, gone, shrunk])).release();
    await first.acquire([busy]); // never released: the process "crashes"
    expect(query<{ in_use: number }>(cacheDir, 'SELECT in_use FROM loras WHERE key = ?', busy.key)[0]!.in_use).toBe(1);
    await first.close();

    rmSync(first.pathFor('user', gone.key));
    truncateSync(first.pathFor('shared', shrunk.key), 100);
    const strayUser = join(cacheDir, 'loras', 'user', `${userKey(602)}.safetensors`);
    const strayShared = join(cacheDir, 'loras', 'shared', 'dropped-in.safetensors');
    writeFileSync(strayUser, 'not registered');
    writeFileSync(strayShared, 'not registered');
    const young = join(cacheDir, 'partial', `user.${userKey(603)}.${'ab'.repeat(8)}.part`);
    const old = join(cacheDir, 'partial', `user.${userKey(604)}.${'cd'.repeat(8)}.part`);
    const junk = join(cacheDir, 'partial', 'whatever.tmp');
    writeFileSync(young, 'x'.repeat(100));
    writeFileSync(old, 'x'.repeat(100));
    writeFileSync(junk, 'x');
    const twoDaysAgo = new Date(Date.now() - 2 * DAY);
    utimesSync(old, twoDaysAgo, twoDaysAgo);

    const second = makeCache({ cacheDir });
    await second.open();
    expect(existsSync(strayUser)).toBe(false);
    expect(existsSync(strayShared)).toBe(false);
    expect(second.has(gone.key)).toBe(false);
    expect(second.has(shrunk.key)).toBe(false);
    expect(existsSync(second.pathFor('shared', shrunk.key))).toBe(false);
    expect(second.has(keep.key)).toBe(true);
    expect(second.has(busy.key)).toBe(true);
    expect(second.inUseCount(busy.key)).toBe(0);
    expect(query<{ n: number }>(cacheDir, 'SELECT COUNT(*) AS n FROM loras WHERE in_use <> 0')[0]!.n).toBe(0);
    expect(filesIn(cacheDir, 'partial')).toEqual([young.split('/').pop()]);
    expect(second.inventory().user).toEqual([keep.key]);
    expect(second.inventory().shared).toEqual([busy.key]);

    // The busy entry is evictable again: a small budget squeezes it out.
    await second.close();
    const third = makeCache({ cacheDir, budgetBytes: 5000 });
    await third.open();
    expect(third.inventory().usedBytes).toBeLessThanOrEqual(5000);
    expect(dirBytes(cacheDir)).toBeLessThanOrEqual(5000);
    await third.close();
  });

  it('moves hits, misses, downloads, bytes, evictions and thrash as expected, and persists them', async () => {
    let now = 2_000_000_000_000;
    const cacheDir = tempDir();
    const K = 1024;
    const cache = makeCache({ cacheDir, budgetBytes: 100 * K, clock: () => now });
    await cache.open();
    const a = lora('user', userKey(700), 40 * K);
    const b = lora('user', userKey(701), 40 * K);
    const c = lora('user', userKey(702), 40 * K);

    const r1 = await cache.acquire([a]);
    expect(r1).toMatchObject({ hit: [], missing: [a.key], bytesDownloaded: 40 * K });
    r1.release();
    now += 1000;
    const r2 = await cache.acquire([a]);
    expect(r2).toMatchObject({ hit: [a.key], missing: [], bytesDownloaded: 0, downloadMs: 0 });
    r2.release();
    expect(cache.inventory().counters).toEqual({ hits: 1, misses: 1, downloads: 1, bytes_downloaded: 40 * K, evictions: 0, thrash: 0 });

    now += 1000;
    (await cache.acquire([b])).release();
    now += 1000;
    (await cache.acquire([c])).release(); // evicts a (LRU)
    expect(cache.has(a.key)).toBe(false);
    now += 10 * 60_000;
    (await cache.acquire([a])).release(); // back 10 minutes after its eviction: thrash; evicts b
    expect(cache.inventory().counters).toEqual({
      hits: 1,
      misses: 4,
      downloads: 4,
      bytes_downloaded: 160 * K,
      evictions: 2,
      thrash: 1,
    });

    now += 2 * HOUR;
    (await cache.acquire([b])).release(); // b was evicted two hours ago: a miss, not thrash
    const after = cache.inventory().counters;
    expect(after.thrash).toBe(1);
    expect(after.evictions).toBe(3);
    await cache.close();

    const reopened = makeCache({ cacheDir, budgetBytes: 100 * K, clock: () => now });
    await reopened.open();
    expect(reopened.inventory().counters).toEqual(after);
    await reopened.close();
  });

  it('treats a changed sha256 for a cached shared LoRA as a miss and replaces the file', async () => {
    const cache = makeCache();
    await cache.open();
    const v1 = lora('shared', 'style.safetensors', 3000);
    const v2 = lora('shared', 'style.safetensors', 4000);
    (await cache.acquire([v1])).release();
    const r = await cache.acquire([v2]);
    expect(r.missing).toEqual([v2.key]);
    expect(readFileSync(r.paths[v2.key]!).equals(v2.data)).toBe(true);
    expect(cache.inventory().usedBytes).toBe(4000);
    r.release();
    await cache.close();
  });

  it('rejects keys that could escape the cache directory', async () => {
    const cache = makeCache();
    await cache.open();
    const base = lora('user', userKey(800), 10);
    for (const bad of [
      { ...base, key: '../../etc/passwd' },
      { ...base, key: 'lora_UPPERCASE0000000000000000' },
      { ...base, kind: 'shared' as const, key: '../x.safetensors' },
      { ...base, kind: 'shared' as const, key: 'sub/dir.safetensors' },
      { ...base, sha256: 'nothex' },
    ]) {
      await expect(cache.acquire([bad])).rejects.toBeInstanceOf(InvalidLoraError);
    }
    expect(server.requestsFor(blobName(base))).toHaveLength(0);
    await cache.close();
  });
});

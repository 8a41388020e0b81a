// A full disk under the cache (issue 18, item 12), on a real small file system: an 8 MiB tmpfs mounted for this test
// (root only; otherwise skipped, loudly). Free space short → unused LoRAs are evicted when that helps, else the attempt
// fails as the machine's failure (DiskFullError → handed back, machine unhealthy) before a byte is written; a download
// that runs out of space anyway leaves no partial file; cache.db on a full disk (SQLITE_FULL) fails the acquire the same
// way, never crashes, and the cache works again once there is room.
import Database from 'better-sqlite3';
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, statfsSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { ClaimedLora } from '../../../contract/jobs.js';
import { TestBlobServer } from '../../../testkit/blob-server.js';
import { failureFromCacheError } from '../job-run.js';
import { DiskFullError } from './disk-space.js';
import { LoraCache } from './lora-cache.js';

const MiB = 1024 * 1024;
const server = new TestBlobServer();
let mountPoint = '';
let mounted = false;
let seq = 0;

const isRoot = process.getuid?.() === 0;
beforeAll(async () => {
  await server.start();
  if (!isRoot) return;
  mountPoint = mkdtempSync(join(tmpdir(), 'lr-smallfs-'));
  mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=8m', 'tmpfs', mountPoint]).status === 0;
});
afterAll(async () => {
  await server.close();
  if (mounted) spawnSync('umount', [mountPoint]);
  if (mountPoint) rmSync(mountPoint, { recursive: true, force: true });
});
const ready = (): boolean => {
  if (!mounted) process.stderr.write('\n*** disk-space.test.ts SKIPPED: not root, or mount -t tmpfs not permitted here ***\n\n');
  return mounted;
};

function lora(size: number): ClaimedLora & { data: Buffer } {
  const data = randomBytes(size);
  const name = `d${++seq}`;
  server.put(name, data);
  return { kind: 'user', key: `lora_${String(seq).padStart(26, '0')}`, size_bytes: size, sha256: createHash('sha256').update(data).digest('hex'), download_url: server.url(name), data };
}

const free = (): number => {
  const s = statfsSync(mountPoint);
  return Number(s.bavail) * Number(s.bsize);
};

/** Writes a filler file so that about `leave` bytes stay free (0: until the file system is full). */
function fill(leave: number): string {
  const path = join(mountPoint, `filler-${++seq}`);
  const fd = openSync(path, 'w');
  const block = Buffer.alloc(64 * 1024);
  try {
    while (free() > leave) writeSync(fd, block, 0, Math.min(block.length, Math.max(4096, free() - leave)));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
  } finally {
    closeSync(fd);
  }
  return path;
}

let cacheDir = '';
const open: LoraCache[] = [];
function cacheOn(opts: { reserve?: number; freeDisk?: () => number } = {}): LoraCache {
  cacheDir = join(mountPoint, `cache-${++seq}`);
  mkdirSync(cacheDir);
  const cache = new LoraCache({
    cacheDir,
    budgetBytes: 64 * MiB, // the budget is not what runs out here
    diskReserveBytes: opts.reserve ?? 256 * 1024,
    ...(opts.freeDisk ? { freeDisk: opts.freeDisk } : {}),
    download: { retries: 0, writeChunkBytes: 64 * 1024 },
  });
  open.push(cache);
  return cache;
}
const partials = (): string[] => readdirSync(join(cacheDir, 'partial'));

afterEach(async () => {
  for (const c of open.splice(0)) await c.close();
  if (!mounted) return;
  for (const f of readdirSync(mountPoint)) rmSync(join(mountPoint, f), { recursive: true, force: true });
});

describe('the cache on a small, filling file system', () => {
  it('free space short: an unused LoRA is evicted to make room, and the download goes ahead', async () => {
    if (!ready()) return;
    const cache = cacheOn();
    await cache.open();
    const a = lora(3 * MiB);
    (await cache.acquire([a])).release();
    fill(3 * MiB); // room for neither B alone with the reserve, but for B once A is gone
    const b = lora(3 * MiB);
    const got = await cache.acquire([b]);
    expect(readFileSync(got.paths[b.key]!).equals(b.data)).toBe(true);
    got.release();
    expect(cache.has(a.key)).toBe(false);
    expect(cache.inventory().counters.evictions).toBe(1);
    await cache.close();
  });

  it('free space short and nothing evictable: fails before writing, as the machine failure; works again once there is room', async () => {
    if (!ready()) return;
    const cache = cacheOn();
    await cache.open();
    const filler = fill(1 * MiB);
    const b = lora(3 * MiB);
    const err = await cache.acquire([b]).then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(DiskFullError);
    expect((err as Error).message).toMatch(/disk full: .* free on the cache's file system, lora_\w+ needs 3\.0 MiB \+ CACHE_DISK_RESERVE/);
    const outcome = failureFromCacheError(err);
    expect(outcome).toMatchObject({ status: 'failed', retryable: true, infrastructure: true });
    expect(partials()).toEqual([]);
    rmSync(filler);
    const again = await cache.acquire([b]);
    expect(readFileSync(again.paths[b.key]!).equals(b.data)).toBe(true);
    again.release();
    await cache.close();
  });

  it('a download that runs out of space anyway (free space misjudged) leaves no partial file and is the machine failure', async () => {
    if (!ready()) return;
    const cache = cacheOn({ freeDisk: () => 1024 * MiB }); // the pre-check is told there is room
    await cache.open();
    fill(1 * MiB);
    const b = lora(3 * MiB);
    const err = await cache.acquire([b]).then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(DiskFullError);
    expect(failureFromCacheError(err)).toMatchObject({ infrastructure: true, reason: expect.stringMatching(/^disk full/) });
    expect(partials()).toEqual([]);
    expect(readdirSync(join(cacheDir, 'loras', 'user'))).toEqual([]);
    await cache.close();
  });

  it('cache.db on a full disk (SQLITE_FULL): the acquire fails as disk full, nothing crashes, the database stays healthy', async () => {
    if (!ready()) return;
    const cache = cacheOn({ reserve: 0 });
    await cache.open();
    const a = lora(64 * 1024);
    (await cache.acquire([a])).release();
    const filler = fill(0);
    // Every use writes (in_use, last_used, counters); the WAL grows until a write needs a page the disk does not have.
    let err: unknown = null;
    for (let i = 0; i < 500 && !err; i++) {
      err = await cache.acquire([a]).then((r) => (r.release(), null), (e: unknown) => e);
    }
    expect(err).toBeInstanceOf(DiskFullError);
    expect(((err as Error).cause as { code?: string } | undefined)?.code).toBe('SQLITE_FULL');
    expect(failureFromCacheError(err)).toMatchObject({ infrastructure: true });
    expect(cache.inUseCount(a.key)).toBe(0);
    rmSync(filler);
    const ok = await cache.acquire([a]);
    expect(ok.hit).toEqual([a.key]);
    ok.release();
    await cache.close();
    const db = new Database(join(cacheDir, 'cache.db'), { readonly: true });
    expect(db.pragma('integrity_check', { simple: true })).toBe('ok');
    db.close();
  });
});

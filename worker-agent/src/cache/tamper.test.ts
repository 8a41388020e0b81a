// Tamper detection of cached LoRAs (issue 18, item 8) with real files and a real HTTP blob server: a cached file
// changed between two jobs is never handed to the second one; it is evicted, downloaded again and verified.
import Database from 'better-sqlite3';
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, utimesSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ClaimedLora } from '../../../contract/jobs.js';
import { TestBlobServer } from '../../../testkit/blob-server.js';
import { LoraCache } from './lora-cache.js';
import { fileStamp } from './tamper.js';

const server = new TestBlobServer();
const dirs: string[] = [];
let seq = 0;
beforeAll(async () => {
  await server.start();
});
afterAll(async () => {
  await server.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function lora(size = 256 * 1024): ClaimedLora & { data: Buffer } {
  const data = randomBytes(size);
  const name = `t${++seq}`;
  server.put(name, data);
  const key = `lora_${String(seq).padStart(26, '0')}`;
  return { kind: 'user', key, size_bytes: size, sha256: createHash('sha256').update(data).digest('hex'), download_url: server.url(name), data };
}

function openCache(cacheDir: string): LoraCache {
  return new LoraCache({ cacheDir, budgetBytes: 8 * 1024 * 1024, download: { retries: 0, writeChunkBytes: 64 * 1024 } });
}

/** Flips one byte in place: same size, same inode; mtime set back to what it was (only ctime shows the write). */
function flipByteKeepingMtime(path: string): void {
  const st = statSync(path);
  const fd = openSync(path, 'r+'); // root here; the job user could not (0444, not the owner)
  const b = readFileSync(path).subarray(100, 101);
  writeSync(fd, Buffer.from([b[0]! ^ 0xff]), 0, 1, 100);
  closeSync(fd);
  utimesSync(path, st.atime, st.mtime);
}

async function use(cache: LoraCache, l: ClaimedLora): Promise<{ hit: string[]; missing: string[]; bytes: Buffer }> {
  const r = await cache.acquire([l]);
  try {
    return { hit: r.hit, missing: r.missing, bytes: readFileSync(r.paths[l.key]!) };
  } finally {
    r.release();
  }
}

describe('cached LoRAs: read-only, tamper-evident', () => {
  it('files are 0444, their directories 0711, partials and the database private', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tamper-')); dirs.push(dir);
    const cache = openCache(dir);
    await cache.open();
    const l = lora();
    await use(cache, l);
    const path = cache.pathFor('user', l.key);
    expect(statSync(path).mode & 0o777).toBe(0o444);
    expect(statSync(join(dir, 'loras', 'user')).mode & 0o777).toBe(0o711);
    expect(statSync(join(dir, 'loras')).mode & 0o777).toBe(0o711);
    expect(statSync(join(dir, 'partial')).mode & 0o777).toBe(0o700);
    expect(statSync(join(dir, 'cache.db')).mode & 0o777).toBe(0o600);
    await cache.close();
  });

  it('a file written in place between two jobs (size, inode and mtime kept) is evicted and downloaded again', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tamper-')); dirs.push(dir);
    const cache = openCache(dir);
    await cache.open();
    const l = lora();
    expect((await use(cache, l)).missing).toEqual([l.key]);
    expect((await use(cache, l)).hit).toEqual([l.key]);
    const path = cache.pathFor('user', l.key);
    const inode = statSync(path).ino;
    flipByteKeepingMtime(path);
    expect(statSync(path).ino).toBe(inode);
    const second = await use(cache, l);
    expect(second.missing).toEqual([l.key]); // not a hit: downloaded again
    expect(second.bytes.equals(l.data)).toBe(true); // the job sees the verified bytes, never the tampered ones
    expect(cache.inventory().counters.downloads).toBe(2);
    await cache.close();
  });

  it('after an agent restart the first use re-hashes: a change no stamp shows (bit rot) is caught', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tamper-')); dirs.push(dir);
    let cache = openCache(dir);
    await cache.open();
    const l = lora();
    await use(cache, l);
    await cache.close();
    // Content changes, metadata does not: write the byte, then make the recorded stamp match the file again (what a
    // silent disk error, or someone able to rewrite cache.db as well, leaves behind).
    const path = cache.pathFor('user', l.key);
    flipByteKeepingMtime(path);
    const db = new Database(join(dir, 'cache.db'));
    db.prepare('UPDATE loras SET stamp = ? WHERE key = ?').run(fileStamp(path), l.key);
    db.close();
    cache = openCache(dir);
    await cache.open();
    const after = await use(cache, l);
    expect(after.missing).toEqual([l.key]);
    expect(after.bytes.equals(l.data)).toBe(true);
    // Verified once since this start: the next use is a hit with no hash (stamp only).
    expect((await use(cache, l)).hit).toEqual([l.key]);
    await cache.close();
  });

  it('a metadata-only change (touch, chmod) is verified by hash and kept, not downloaded again', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tamper-')); dirs.push(dir);
    const cache = openCache(dir);
    await cache.open();
    const l = lora();
    await use(cache, l);
    const path = cache.pathFor('user', l.key);
    utimesSync(path, new Date(), new Date(Date.now() - 3_600_000));
    const again = await use(cache, l);
    expect(again.hit).toEqual([l.key]);
    expect(cache.inventory().counters.downloads).toBe(1);
    await cache.close();
  });
});

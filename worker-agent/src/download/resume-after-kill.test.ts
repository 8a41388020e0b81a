// A download whose process is killed (SIGKILL) half-way resumes from its partial file in the next process: only the
// missing bytes are fetched (Range: bytes=N-), the result verifies, and nothing half-written was ever registered.
// The first process is a real child running the compiled cache (dist/: run `npx tsc -p .` first).
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LoraCache } from '../cache/lora-cache.js';
import { sleep } from '../../../test/support/helpers.js';
import { TestBlobServer } from '../../../testkit/blob-server.js';

const server = new TestBlobServer();
const dirs: string[] = [];
beforeAll(async () => {
  await server.start();
});
afterAll(async () => {
  await server.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const DIST_CACHE = resolve('dist/worker-agent/src/cache/lora-cache.js');

function partialBytes(cacheDir: string): number {
  const d = join(cacheDir, 'partial');
  if (!existsSync(d)) return 0;
  return readdirSync(d).reduce((n, f) => n + statSync(join(d, f)).size, 0);
}

describe('download killed half-way', () => {
  it.skipIf(!existsSync(DIST_CACHE))('resumes in a new process from the partial file and verifies', async () => {
    const cacheDir = mkdtempSync(join(tmpdir(), 'resume-kill-'));
    dirs.push(cacheDir);
    const size = 3 * 1024 * 1024;
    const data = randomBytes(size);
    server.put('big', data);
    server.behave('big', { stallAfterBytes: Math.floor(size / 2) });
    const lora = {
      kind: 'user' as const,
      key: `lora_${'k'.repeat(26)}`,
      size_bytes: size,
      sha256: createHash('sha256').update(data).digest('hex'),
      download_url: server.url('big'),
    };

    const code = `
      const { LoraCache } = await import(${JSON.stringify(pathToFileURL(DIST_CACHE).href)});
      const cache = new LoraCache({ cacheDir: ${JSON.stringify(cacheDir)}, budgetBytes: 64 * 1024 * 1024,
        download: { retries: 0, stallTimeoutMs: 600000, writeChunkBytes: 64 * 1024 } });
      await cache.open();
      process.stdout.write('opened\\n');
      await cache.acquire([${JSON.stringify(lora)}]);
      process.stdout.write('finished\\n');
    `;
    const child = spawn(process.execPath, ['--input-type=module', '-e', code], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d));
    child.stderr.on('data', (d: Buffer) => (err += d));
    const exited = new Promise<NodeJS.Signals | null>((r) => child.once('exit', (_c, s) => r(s)));

    // Wait until (nearly) half the file is on disk, then kill the downloading process outright.
    const deadline = Date.now() + 20_000;
    while (partialBytes(cacheDir) < size / 2 - 64 * 1024) {
      if (Date.now() > deadline) throw new Error(`partial never grew; child output: ${out} ${err}`);
      await sleep(20);
    }
    child.kill('SIGKILL');
    expect(await exited).toBe('SIGKILL');
    expect(out).not.toContain('finished');
    const partial = partialBytes(cacheDir);
    expect(partial).toBeGreaterThan(0);
    expect(partial).toBeLessThan(size);
    expect(existsSync(join(cacheDir, 'loras', 'user', `${lora.key}.safetensors`))).toBe(false);
    const db = new Database(join(cacheDir, 'cache.db'), { readonly: true });
    expect(db.prepare('SELECT key FROM loras').all()).toEqual([]);
    db.close();

    // A new process (here: this one) opens the same cache: the young partial is kept and the download resumes.
    const cache = new LoraCache({ cacheDir, budgetBytes: 64 * 1024 * 1024, download: { retries: 0 } });
    await cache.open();
    const res = await cache.acquire([lora]);
    const reqs = server.requestsFor('big');
    expect(reqs).toHaveLength(2);
    expect(reqs[1]!.range).toBe(`bytes=${partial}-`);
    expect(res.missing).toEqual([lora.key]);
    expect(res.bytesDownloaded).toBe(size - partial);
    expect(readFileSync(res.paths[lora.key]!).equals(data)).toBe(true);
    expect(partialBytes(cacheDir)).toBe(0);
    res.release();
    await cache.close();
  });
});

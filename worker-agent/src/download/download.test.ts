import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { downloadVerified, HttpStatusError, IntegrityError, TransientDownloadError, redactUrl } from './download.js';
import { TestBlobServer } from '../../../testkit/blob-server.js';

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

describe('downloadVerified', () => {
  const server = new TestBlobServer();
  let dir: string;
  let n = 0;
  const fast = { minRetryDelayMs: 1, maxRetryDelayMs: 5, writeChunkBytes: 64 * 1024 };

  beforeAll(async () => {
    await server.start();
  });
  afterAll(async () => {
    await server.close();
  });
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'dl-test-'));
    return () => rmSync(dir, { recursive: true, force: true });
  });

  /** A fresh blob of `size` random bytes under a unique name. */
  function blob(size: number): { name: string; data: Buffer; dest: string; partialPath: string } {
    const name = `blob-${++n}`;
    const data = randomBytes(size);
    server.put(name, data);
    return { name, data, dest: join(dir, 'final', `${name}.safetensors`), partialPath: join(dir, 'partial', `${name}.part`) };
  }

  it('downloads, verifies and renames into place', async () => {
    const b = blob(3 * 1024 * 1024 + 17);
    const progress: number[] = [];
    const r = await downloadVerified({
      url: server.url(b.name),
      dest: b.dest,
      partialPath: b.partialPath,
      expectedSize: b.data.length,
      expectedSha256: sha(b.data),
      onProgress: (p) => progress.push(p.bytes),
      ...fast,
    });
    expect(readFileSync(b.dest).equals(b.data)).toBe(true);
    expect(existsSync(b.partialPath)).toBe(false);
    expect(r).toMatchObject({ sizeBytes: b.data.length, sha256: sha(b.data), bytesTransferred: b.data.length, resumedFromBytes: 0, attempts: 1 });
    expect(progress.at(-1)).toBe(b.data.length);
    expect(server.requestsFor(b.name)).toHaveLength(1);
    expect(server.requestsFor(b.name)[0]!.range).toBeNull();
  });

  it('resumes a download cut half-way from the partial file, with a Range header at its size', async () => {
    const b = blob(2 * 1024 * 1024);
    const half = 1024 * 1024;
    server.behave(b.name, { cutAfterBytes: half });
    const opts = {
      url: server.url(b.name),
      dest: b.dest,
      partialPath: b.partialPath,
      expectedSize: b.data.length,
      expectedSha256: sha(b.data),
      ...fast,
    };
    await expect(downloadVerified({ ...opts, retries: 0 })).rejects.toBeInstanceOf(TransientDownloadError);
    expect(existsSync(b.dest)).toBe(false);
    const partialSize = statSync(b.partialPath).size;
    expect(partialSize).toBeGreaterThan(0);
    expect(partialSize).toBeLessThanOrEqual(half);
    // What is on disk is exactly the blob's prefix.
    expect(readFileSync(b.partialPath).equals(b.data.subarray(0, partialSize))).toBe(true);

    const r = await downloadVerified(opts);
    const reqs = server.requestsFor(b.name);
    expect(reqs).toHaveLength(2);
    expect(reqs[1]!.range).toBe(`bytes=${partialSize}-`);
    expect(reqs[1]!.status).toBe(206);
    expect(r.resumedFromBytes).toBe(partialSize);
    expect(r.bytesTransferred).toBe(b.data.length - partialSize);
    expect(sha(readFileSync(b.dest))).toBe(sha(b.data));
    expect(existsSync(b.partialPath)).toBe(false);
  });

  it('retries a cut connection inside one call and resumes with a Range request', async () => {
    const b = blob(1024 * 1024 + 5);
    server.behave(b.name, { cutAfterBytes: 300_000 });
    const r = await downloadVerified({
      url: server.url(b.name),
      dest: b.dest,
      partialPath: b.partialPath,
      expectedSize: b.data.length,
      expectedSha256: sha(b.data),
      retries: 3,
      ...fast,
    });
    const reqs = server.requestsFor(b.name);
    expect(reqs).toHaveLength(2);
    expect(reqs[0]!.range).toBeNull();
    const m = /^bytes=(\d+)-$/.exec(reqs[1]!.range ?? '');
    expect(m).not.toBeNull();
    const start = Number(m![1]);
    expect(start).toBeGreaterThan(0);
    expect(start).toBeLessThanOrEqual(300_000);
    expect(r.attempts).toBe(2);
    expect(r.bytesTransferred).toBe(b.data.length); // first part + the rest, nothing twice
    expect(readFileSync(b.dest).equals(b.data)).toBe(true);
  });

  it('starts over when the server answers a ranged request with 200', async () => {
    const b = blob(500_000);
    mkdirSync(join(dir, 'partial'), { recursive: true });
    writeFileSync(b.partialPath, b.data.subarray(0, 100_000));
    server.behave(b.name, { ignoreRange: true });
    const r = await downloadVerified({
      url: server.url(b.name),
      dest: b.dest,
      partialPath: b.partialPath,
      expectedSize: b.data.length,
      expectedSha256: sha(b.data),
      ...fast,
    });
    expect(server.requestsFor(b.name)[0]).toMatchObject({ range: 'bytes=100000-', status: 200 });
    expect(r.bytesTransferred).toBe(b.data.length);
    expect(readFileSync(b.dest).equals(b.data)).toBe(true);
  });

  it('throws IntegrityError on a corrupt body and leaves neither the file nor the partial', async () => {
    const b = blob(800_000);
    server.behave(b.name, { corrupt: true });
    const err = await downloadVerified({
      url: server.url(b.name),
      dest: b.dest,
      partialPath: b.partialPath,
      expectedSize: b.data.length,
      expectedSha256: sha(b.data),
      retries: 3,
      ...fast,
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(IntegrityError);
    expect((err as Error).message).toMatch(/sha256 mismatch/);
    expect((err as Error).message).not.toContain('sig=test'); // the SAS signature is never echoed
    expect(existsSync(b.dest)).toBe(false);
    expect(existsSync(b.partialPath)).toBe(false);
    expect(server.requestsFor(b.name)).toHaveLength(1); // integrity failures are not retried
  });

  it('detects a corrupt partial left on disk (resume hashes the existing bytes)', async () => {
    const b = blob(400_000);
    mkdirSync(join(dir, 'partial'), { recursive: true });
    const bad = Buffer.from(b.data.subarray(0, 200_000));
    bad[10] = bad[10]! ^ 0x01;
    writeFileSync(b.partialPath, bad);
    await expect(
      downloadVerified({
        url: server.url(b.name),
        dest: b.dest,
        partialPath: b.partialPath,
        expectedSize: b.data.length,
        expectedSha256: sha(b.data),
        ...fast,
      }),
    ).rejects.toBeInstanceOf(IntegrityError);
    expect(server.requestsFor(b.name)[0]!.range).toBe('bytes=200000-');
    expect(existsSync(b.dest)).toBe(false);
    expect(existsSync(b.partialPath)).toBe(false);
  });

  it('rejects a size that does not match the expected one without retrying', async () => {
    const b = blob(10_000);
    await expect(
      downloadVerified({
        url: server.url(b.name),
        dest: b.dest,
        partialPath: b.partialPath,
        expectedSize: 9_999,
        expectedSha256: sha(b.data),
        retries: 2,
        ...fast,
      }),
    ).rejects.toBeInstanceOf(IntegrityError);
    expect(server.requestsFor(b.name)).toHaveLength(1);
    expect(existsSync(b.dest)).toBe(false);
  });

  it('does not retry 404 (or other 4xx)', async () => {
    const err = await downloadVerified({
      url: server.url('no-such-blob'),
      dest: join(dir, 'x'),
      partialPath: join(dir, 'x.part'),
      expectedSize: 1,
      expectedSha256: 'a'.repeat(64),
      retries: 3,
      ...fast,
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HttpStatusError);
    expect((err as HttpStatusError).status).toBe(404);
    expect(server.requestsFor('no-such-blob')).toHaveLength(1);
  });

  it('retries 503 and 429, then succeeds', async () => {
    const b = blob(50_000);
    server.behave(b.name, { status: 503, times: 2 });
    const r = await downloadVerified({
      url: server.url(b.name),
      dest: b.dest,
      partialPath: b.partialPath,
      expectedSize: b.data.length,
      expectedSha256: sha(b.data),
      retries: 3,
      ...fast,
    });
    expect(server.requestsFor(b.name).map((q) => q.status)).toEqual([503, 503, 200]);
    expect(r.attempts).toBe(3);
    expect(readFileSync(b.dest).equals(b.data)).toBe(true);

    const c = blob(1000);
    server.behave(c.name, { status: 429, times: 5 });
    await expect(
      downloadVerified({
        url: server.url(c.name),
        dest: c.dest,
        partialPath: c.partialPath,
        expectedSize: c.data.length,
        expectedSha256: sha(c.data),
        retries: 2,
        ...fast,
      }),
    ).rejects.toBeInstanceOf(HttpStatusError);
    expect(server.requestsFor(c.name)).toHaveLength(3); // 1 + 2 retries
  });

  it('stops waiting and retrying as soon as the signal aborts', async () => {
    const b = blob(1024 * 1024);
    server.behave(b.name, { cutAfterBytes: 200_000 }); // first attempt fails half-way...
    const ac = new AbortController();
    const p = downloadVerified({
      url: server.url(b.name),
      dest: b.dest,
      partialPath: b.partialPath,
      expectedSize: b.data.length,
      expectedSha256: sha(b.data),
      signal: ac.signal,
      retries: 5,
      minRetryDelayMs: 60_000, // ...and the retry waits long enough for the abort to land first
      maxRetryDelayMs: 60_000,
      writeChunkBytes: 64 * 1024,
    });
    await server.waitForRequests(b.name, 1);
    await new Promise((r) => setTimeout(r, 50));
    ac.abort(new Error('job cancelled'));
    await expect(p).rejects.toThrow('job cancelled');
    expect(existsSync(b.dest)).toBe(false);
    expect(server.requestsFor(b.name)).toHaveLength(1);
  });

  it('redacts SAS query strings', () => {
    expect(redactUrl('https://acct.blob.core.windows.net/c/b.safetensors?sv=1&sig=secret')).toBe(
      'https://acct.blob.core.windows.net/c/b.safetensors?<redacted>',
    );
  });
});

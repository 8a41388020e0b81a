// One attempt of a download: resume from the partial file (re-hashed, never trusted blindly), GET the rest, write
// and hash it, and when the file is complete verify it and rename it into place. The retry loop is in download.ts.
import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import { AbortError as RetryAbort } from 'p-retry';
import { ChunkWriter } from './chunk-writer.js';
import { IntegrityError, HttpStatusError, TransientDownloadError, redactUrl, toError } from './errors.js';
import type { HttpGet } from './http-get.js';

export interface DownloadProgress {
  /** Bytes of the file present (partial + received). */
  bytes: number;
  total: number;
}

export interface DownloadResult {
  path: string;
  sizeBytes: number;
  sha256: string;
  /** Bytes received over the network across all attempts (excludes bytes reused from an earlier partial). */
  bytesTransferred: number;
  /** Partial bytes already on disk when the first attempt started (0 when starting fresh). */
  resumedFromBytes: number;
  attempts: number;
}

/** What every attempt of one download reads. */
export interface AttemptContext {
  url: string;
  dest: string;
  partialPath: string;
  expectedSize: number;
  /** Lower-case hex. */
  expectedSha256: string;
  signal: AbortSignal | undefined;
  onProgress: ((p: DownloadProgress) => void) | undefined;
  stallTimeoutMs: number;
  writeChunkBytes: number;
  get: HttpGet;
  resumedFromBytes: number;
}

/** What the attempts of one download add up. */
export interface DownloadState {
  bytesTransferred: number;
  attempts: number;
  /** Set at the commit point (the rename): an abort after it no longer cancels the download. */
  committed: boolean;
}

export async function fileSize(path: string): Promise<number> {
  try {
    const s = await stat(path);
    return s.isFile() ? s.size : -1;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return -1;
    throw err;
  }
}

async function hashFileInto(hash: Hash, path: string, length: number): Promise<void> {
  if (length === 0) return;
  const stream = createReadStream(path, { start: 0, end: length - 1, highWaterMark: 4 * 1024 * 1024 });
  for await (const chunk of stream) hash.update(chunk as Buffer);
}

function parseContentRangeStart(header: string | null): number | null {
  if (!header) return null;
  const m = /^bytes (\d+)-\d+\/(?:\d+|\*)$/i.exec(header.trim());
  return m ? Number(m[1]) : null;
}

async function fsyncDir(dir: string): Promise<void> {
  let fh: FileHandle | undefined;
  try {
    fh = await open(dir, 'r');
    await fh.sync();
  } catch {
    // Not supported on every platform/file system; the rename itself is still atomic.
  } finally {
    await fh?.close().catch(() => undefined);
  }
}

async function failIntegrity(c: AttemptContext, message: string): Promise<never> {
  await rm(c.partialPath, { force: true });
  throw new IntegrityError(message, c.url);
}

/** Verifies the complete partial and moves it into place. */
async function finish(c: AttemptContext, s: DownloadState, fh: FileHandle, hash: Hash): Promise<DownloadResult> {
  await fh.sync();
  await fh.close();
  const size = await fileSize(c.partialPath);
  if (size !== c.expectedSize) return failIntegrity(c, `size mismatch: expected ${c.expectedSize} bytes, got ${size}`);
  const digest = hash.digest('hex');
  if (digest !== c.expectedSha256) {
    return failIntegrity(c, `sha256 mismatch for ${redactUrl(c.url)}: expected ${c.expectedSha256}, got ${digest}`);
  }
  // Commit point: once the rename starts the download has happened, whatever the signal says afterwards,
  // so the caller can register the file (an abort here would leave an unregistered file at dest).
  c.signal?.throwIfAborted();
  s.committed = true;
  await rename(c.partialPath, c.dest);
  await fsyncDir(dirname(c.dest));
  return { path: c.dest, sizeBytes: c.expectedSize, sha256: digest, bytesTransferred: s.bytesTransferred, resumedFromBytes: c.resumedFromBytes, attempts: s.attempts };
}

export async function attemptDownload(c: AttemptContext, s: DownloadState): Promise<DownloadResult> {
  s.attempts += 1;
  let offset = await fileSize(c.partialPath);
  if (offset > c.expectedSize) {
    await rm(c.partialPath, { force: true });
    offset = -1;
  }
  const hash = createHash('sha256');
  if (offset > 0) await hashFileInto(hash, c.partialPath, offset);

  if (offset === c.expectedSize) {
    // A complete partial (crash between the last write and the rename): verify without the network.
    if (hash.copy().digest('hex') === c.expectedSha256) {
      const fh = await open(c.partialPath, 'r+');
      return finish(c, s, fh, hash);
    }
    await rm(c.partialPath, { force: true });
    throw new TransientDownloadError('complete partial file did not verify; starting over');
  }

  const attemptController = new AbortController();
  const attemptSignal = c.signal ? AbortSignal.any([c.signal, attemptController.signal]) : attemptController.signal;
  // One interval per attempt, not a timer per chunk: chunks only stamp the time of the last byte.
  let lastDataAt = performance.now();
  const stallTimer = setInterval(
    () => {
      if (performance.now() - lastDataAt >= c.stallTimeoutMs) {
        attemptController.abort(new TransientDownloadError(`no data for ${c.stallTimeoutMs} ms`));
      }
    },
    Math.max(10, Math.min(1000, Math.floor(c.stallTimeoutMs / 4))),
  );
  stallTimer.unref();
  const armStallTimer = (): void => {
    lastDataAt = performance.now();
  };

  const headers: Record<string, string> = {};
  if (offset > 0) headers.Range = `bytes=${offset}-`;
  let fh: FileHandle | undefined;
  let writer: ChunkWriter | undefined;
  try {
    armStallTimer();
    const res = await c.get(c.url, headers, attemptSignal);
    if (res.status === 416 && offset > 0) {
      await res.cancel();
      await rm(c.partialPath, { force: true });
      throw new TransientDownloadError('server rejected the resume range; starting over');
    }
    if (res.status !== 200 && res.status !== 206) {
      await res.cancel();
      throw new HttpStatusError(res.status, c.url);
    }
    let position = offset > 0 ? offset : 0;
    let activeHash = hash;
    if (res.status === 206) {
      const start = parseContentRangeStart(res.header('content-range'));
      if (start !== null && start !== position) {
        await res.cancel();
        await rm(c.partialPath, { force: true });
        throw new TransientDownloadError(`server sent range starting at ${start}, asked for ${position}`);
      }
    } else if (position > 0) {
      // 200 to a ranged request: the server sends the whole file; start over.
      position = 0;
      activeHash = createHash('sha256');
    }
    if (!res.body) throw new TransientDownloadError('response has no body');
    const contentLength = res.header('content-length');
    if (contentLength !== null && /^\d+$/.test(contentLength) && position + Number(contentLength) !== c.expectedSize) {
      await res.cancel();
      if (res.status === 200) {
        return failIntegrity(c, `server sent ${contentLength} bytes, expected ${c.expectedSize}`);
      }
      await rm(c.partialPath, { force: true });
      throw new TransientDownloadError(`ranged response length ${contentLength} does not complete the file; starting over`);
    }

    fh = await open(c.partialPath, position === 0 ? 'w' : 'r+');
    if (position === 0) await fh.truncate(0);
    else await fh.truncate(position); // drop anything past what we hashed
    writer = new ChunkWriter(fh, position, c.writeChunkBytes);
    let have = position;
    for await (const chunk of res.body) {
      armStallTimer();
      if (have + chunk.byteLength > c.expectedSize) {
        await writer.flush().catch(() => undefined);
        await fh.close();
        fh = undefined;
        return failIntegrity(c, `server sent more than the expected ${c.expectedSize} bytes`);
      }
      activeHash.update(chunk);
      await writer.push(chunk);
      have += chunk.byteLength;
      s.bytesTransferred += chunk.byteLength;
      c.onProgress?.({ bytes: have, total: c.expectedSize });
    }
    await writer.flush();
    clearInterval(stallTimer);
    if (have < c.expectedSize) {
      await fh.sync();
      throw new TransientDownloadError(`body ended early at ${have} of ${c.expectedSize} bytes`);
    }
    const done = fh;
    fh = undefined;
    return await finish(c, s, done, activeHash);
  } catch (err) {
    // Whatever reached the disk stays there for the next attempt: it is re-hashed, never trusted blindly.
    if (fh) {
      // Bytes received (and hashed) but still buffered are worth keeping: the next attempt re-hashes the file.
      await writer?.flush().catch(() => undefined);
      await fh.sync().catch(() => undefined);
      await fh.close().catch(() => undefined);
    }
    if (c.signal?.aborted) throw new RetryAbort(toError(c.signal.reason));
    if (attemptController.signal.aborted) throw attemptController.signal.reason as Error;
    throw err;
  } finally {
    clearInterval(stallTimer);
  }
}

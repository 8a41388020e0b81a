// Resumable, verified download of one blob (an Azure Blob SAS URL) into place.
//
// Bytes go to a partial file first. A later attempt (same process or after a restart) re-hashes what the partial
// already holds and asks only for the rest with `Range: bytes=N-`. The file is renamed into place only after its
// size and sha256 match what the control plane promised, so a corrupt or truncated file is never visible at `dest`.
import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { dirname } from 'node:path';
import pRetry, { AbortError as RetryAbort } from 'p-retry';

/** The file does not match the expected size or sha256. Never retried: the partial is deleted. */
export class IntegrityError extends Error {
  override readonly name = 'IntegrityError';
  constructor(
    message: string,
    readonly url: string,
  ) {
    super(message);
  }
}

/** The server answered with an HTTP status we do not retry (4xx other than 408/429) or retries ran out. */
export class HttpStatusError extends Error {
  override readonly name = 'HttpStatusError';
  constructor(
    readonly status: number,
    readonly url: string,
  ) {
    super(`download failed: HTTP ${status} from ${redactUrl(url)}`);
  }
  get retryable(): boolean {
    return this.status >= 500 || this.status === 408 || this.status === 429;
  }
}

/** A failure worth another attempt (connection cut, stalled transfer, short body). Keeps the partial file. */
export class TransientDownloadError extends Error {
  override readonly name = 'TransientDownloadError';
}

export interface DownloadProgress {
  /** Bytes of the file present (partial + received). */
  bytes: number;
  total: number;
}

export interface DownloadOptions {
  url: string;
  /** Final path; created atomically by rename. Parent directories are created. */
  dest: string;
  /** Where bytes accumulate until verified. Must be on the same file system as `dest`. */
  partialPath: string;
  expectedSize: number;
  /** Lower-case or upper-case hex sha256 of the whole file. */
  expectedSha256: string;
  signal?: AbortSignal;
  onProgress?: (p: DownloadProgress) => void;
  /** Retries after the first attempt for network errors, 5xx, 408 and 429. Default 4. */
  retries?: number;
  /** First backoff delay; doubles each retry (randomized). Default 500 ms. */
  minRetryDelayMs?: number;
  /** Backoff ceiling. Default 15 s. */
  maxRetryDelayMs?: number;
  /** Abort an attempt (and retry) when no byte arrives for this long. Default 60 s. */
  stallTimeoutMs?: number;
  /** Bytes gathered before each write to disk. Default 4 MiB. */
  writeChunkBytes?: number;
  /** Injected for tests; by default requests go through node:http(s) with keep-alive. */
  fetch?: typeof fetch;
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

const NON_RETRYABLE_FS_CODES = new Set(['ENOSPC', 'EDQUOT', 'EACCES', 'EPERM', 'EROFS', 'EISDIR', 'ENOTDIR']);

/** A SAS URL carries its signature in the query string: never log it. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.origin}${u.pathname}${u.search ? '?<redacted>' : ''}`;
  } catch {
    return '<invalid url>';
  }
}

async function fileSize(path: string): Promise<number> {
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

/**
 * Buffers network chunks and writes them in large blocks at an explicit position. Writes are pipelined: a block is
 * handed to the file system and reading goes on while it is written; push() only waits when more than
 * `maxInFlight` blocks are queued (back-pressure), so the network and the disk work at the same time.
 */
class ChunkWriter {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private tail: Promise<void> = Promise.resolve();
  private inFlight = 0;
  private failure: unknown;
  private unsynced = 0;
  constructor(
    private readonly fh: FileHandle,
    private position: number,
    private readonly chunkBytes: number,
    private readonly maxInFlight = 8,
    /** fdatasync after this many written bytes, in the write chain: the final fsync before the rename then has
     * little left to flush, instead of stalling on the whole file at the end. */
    private readonly syncEveryBytes = 64 * 1024 * 1024,
  ) {}

  async push(chunk: Uint8Array): Promise<void> {
    this.pending.push(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
    this.pendingBytes += chunk.byteLength;
    if (this.pendingBytes >= this.chunkBytes) {
      this.enqueue();
      if (this.inFlight > this.maxInFlight) await this.tail;
    }
    if (this.failure) throw this.failure;
  }

  private enqueue(): void {
    if (this.pendingBytes === 0) return;
    // writev: the network chunks go to the file as they are, without being copied into one block first.
    let buffers = this.pending;
    const length = this.pendingBytes;
    this.pending = [];
    this.pendingBytes = 0;
    const at = this.position;
    this.position += length;
    this.inFlight++;
    this.tail = this.tail.then(async () => {
      try {
        if (this.failure) return;
        let off = 0;
        while (off < length) {
          const { bytesWritten } = await this.fh.writev(buffers, at + off);
          off += bytesWritten;
          if (off < length) buffers = [Buffer.concat(buffers).subarray(bytesWritten)]; // short write: rare
        }
        this.unsynced += length;
        if (this.unsynced >= this.syncEveryBytes) {
          this.unsynced = 0;
          await this.fh.datasync();
        }
      } catch (err) {
        this.failure ??= err;
      } finally {
        this.inFlight--;
      }
    });
  }

  /** Writes everything received so far; throws the first write error. */
  async flush(): Promise<void> {
    this.enqueue();
    await this.tail;
    if (this.failure) throw this.failure;
  }
}

/** The little of an HTTP response the downloader needs, from node:http or from an injected fetch. */
interface BodyResponse {
  status: number;
  header(name: string): string | null;
  body: AsyncIterable<Uint8Array> | null;
  cancel(): Promise<void>;
}

const httpAgent = new HttpAgent({ keepAlive: true, maxSockets: 16 });
const httpsAgent = new HttpsAgent({ keepAlive: true, maxSockets: 16 });

/**
 * GET with node:http(s). Chosen over the global fetch (undici + web streams) because it moves bytes about three
 * times faster into Node buffers on this path, which is what keeps the verified download level with the SDK.
 */
function nodeGet(url: string, headers: Record<string, string>, signal: AbortSignal): Promise<BodyResponse> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const isHttps = u.protocol === 'https:';
    if (!isHttps && u.protocol !== 'http:') {
      reject(new TypeError(`unsupported protocol ${u.protocol}`));
      return;
    }
    const req = (isHttps ? httpsRequest : httpRequest)(u, { method: 'GET', headers, signal, agent: isHttps ? httpsAgent : httpAgent });
    req.once('error', reject);
    req.once('response', (res: IncomingMessage) => {
      resolve({
        status: res.statusCode ?? 0,
        header: (name) => {
          const v = res.headers[name.toLowerCase()];
          return v === undefined ? null : Array.isArray(v) ? v.join(', ') : v;
        },
        body: res,
        cancel: async () => {
          res.destroy();
        },
      });
    });
    req.end();
  });
}

async function fetchGet(doFetch: typeof fetch, url: string, headers: Record<string, string>, signal: AbortSignal): Promise<BodyResponse> {
  const res = await doFetch(url, { headers, signal });
  return {
    status: res.status,
    header: (name) => res.headers.get(name),
    body: res.body as AsyncIterable<Uint8Array> | null,
    cancel: async () => {
      await res.body?.cancel().catch(() => undefined);
    },
  };
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

/**
 * Downloads `url` to `dest` through `partialPath`, resuming from whatever the partial already holds, verifying
 * size and sha256, fsyncing, then renaming into place. Throws IntegrityError (partial deleted), HttpStatusError,
 * TransientDownloadError after retries (partial kept for a later resume), or the signal's reason when aborted.
 */
export async function downloadVerified(options: DownloadOptions): Promise<DownloadResult> {
  const {
    url,
    dest,
    partialPath,
    expectedSize,
    signal,
    onProgress,
    retries = 4,
    minRetryDelayMs = 500,
    maxRetryDelayMs = 15_000,
    stallTimeoutMs = 60_000,
    writeChunkBytes = 4 * 1024 * 1024,
  } = options;
  const get = (u: string, h: Record<string, string>, sig: AbortSignal): Promise<BodyResponse> =>
    options.fetch ? fetchGet(options.fetch, u, h, sig) : nodeGet(u, h, sig);
  const expectedSha256 = options.expectedSha256.toLowerCase();
  if (!Number.isSafeInteger(expectedSize) || expectedSize < 0) throw new RangeError(`invalid expectedSize ${expectedSize}`);
  if (!/^[0-9a-f]{64}$/.test(expectedSha256)) throw new RangeError('expectedSha256 must be 64 hex characters');
  signal?.throwIfAborted();

  await mkdir(dirname(partialPath), { recursive: true });
  await mkdir(dirname(dest), { recursive: true });

  let bytesTransferred = 0;
  let attempts = 0;
  let committed = false;
  const initialPartial = await fileSize(partialPath);
  const resumedFromBytes = initialPartial > 0 && initialPartial <= expectedSize ? initialPartial : 0;

  const failIntegrity = async (message: string): Promise<never> => {
    await rm(partialPath, { force: true });
    throw new IntegrityError(message, url);
  };

  /** Verifies the complete partial and moves it into place. */
  const finish = async (fh: FileHandle, hash: Hash): Promise<DownloadResult> => {
    await fh.sync();
    await fh.close();
    const size = await fileSize(partialPath);
    if (size !== expectedSize) return failIntegrity(`size mismatch: expected ${expectedSize} bytes, got ${size}`);
    const digest = hash.digest('hex');
    if (digest !== expectedSha256) {
      return failIntegrity(`sha256 mismatch for ${redactUrl(url)}: expected ${expectedSha256}, got ${digest}`);
    }
    // Commit point: once the rename starts the download has happened, whatever the signal says afterwards,
    // so the caller can register the file (an abort here would leave an unregistered file at dest).
    signal?.throwIfAborted();
    committed = true;
    await rename(partialPath, dest);
    await fsyncDir(dirname(dest));
    return { path: dest, sizeBytes: expectedSize, sha256: digest, bytesTransferred, resumedFromBytes, attempts };
  };

  const attempt = async (): Promise<DownloadResult> => {
    attempts += 1;
    let offset = await fileSize(partialPath);
    if (offset > expectedSize) {
      await rm(partialPath, { force: true });
      offset = -1;
    }
    const hash = createHash('sha256');
    if (offset > 0) await hashFileInto(hash, partialPath, offset);

    if (offset === expectedSize) {
      // A complete partial (crash between the last write and the rename): verify without the network.
      if (hash.copy().digest('hex') === expectedSha256) {
        const fh = await open(partialPath, 'r+');
        return finish(fh, hash);
      }
      await rm(partialPath, { force: true });
      throw new TransientDownloadError('complete partial file did not verify; starting over');
    }

    const attemptController = new AbortController();
    const attemptSignal = signal ? AbortSignal.any([signal, attemptController.signal]) : attemptController.signal;
    // One interval per attempt, not a timer per chunk: chunks only stamp the time of the last byte.
    let lastDataAt = performance.now();
    const stallTimer = setInterval(
      () => {
        if (performance.now() - lastDataAt >= stallTimeoutMs) {
          attemptController.abort(new TransientDownloadError(`no data for ${stallTimeoutMs} ms`));
        }
      },
      Math.max(10, Math.min(1000, Math.floor(stallTimeoutMs / 4))),
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
      const res = await get(url, headers, attemptSignal);
      if (res.status === 416 && offset > 0) {
        await res.cancel();
        await rm(partialPath, { force: true });
        throw new TransientDownloadError('server rejected the resume range; starting over');
      }
      if (res.status !== 200 && res.status !== 206) {
        await res.cancel();
        throw new HttpStatusError(res.status, url);
      }
      let position = offset > 0 ? offset : 0;
      let activeHash = hash;
      if (res.status === 206) {
        const start = parseContentRangeStart(res.header('content-range'));
        if (start !== null && start !== position) {
          await res.cancel();
          await rm(partialPath, { force: true });
          throw new TransientDownloadError(`server sent range starting at ${start}, asked for ${position}`);
        }
      } else if (position > 0) {
        // 200 to a ranged request: the server sends the whole file; start over.
        position = 0;
        activeHash = createHash('sha256');
      }
      if (!res.body) throw new TransientDownloadError('response has no body');
      const contentLength = res.header('content-length');
      if (contentLength !== null && /^\d+$/.test(contentLength) && position + Number(contentLength) !== expectedSize) {
        await res.cancel();
        if (res.status === 200) {
          return failIntegrity(`server sent ${contentLength} bytes, expected ${expectedSize}`);
        }
        await rm(partialPath, { force: true });
        throw new TransientDownloadError(`ranged response length ${contentLength} does not complete the file; starting over`);
      }

      fh = await open(partialPath, position === 0 ? 'w' : 'r+');
      if (position === 0) await fh.truncate(0);
      else await fh.truncate(position); // drop anything past what we hashed
      writer = new ChunkWriter(fh, position, writeChunkBytes);
      let have = position;
      for await (const chunk of res.body) {
        armStallTimer();
        if (have + chunk.byteLength > expectedSize) {
          await writer.flush().catch(() => undefined);
          await fh.close();
          fh = undefined;
          return failIntegrity(`server sent more than the expected ${expectedSize} bytes`);
        }
        activeHash.update(chunk);
        await writer.push(chunk);
        have += chunk.byteLength;
        bytesTransferred += chunk.byteLength;
        onProgress?.({ bytes: have, total: expectedSize });
      }
      await writer.flush();
      clearInterval(stallTimer);
      if (have < expectedSize) {
        await fh.sync();
        throw new TransientDownloadError(`body ended early at ${have} of ${expectedSize} bytes`);
      }
      const done = fh;
      fh = undefined;
      return await finish(done, activeHash);
    } catch (err) {
      // Whatever reached the disk stays there for the next attempt: it is re-hashed, never trusted blindly.
      if (fh) {
        // Bytes received (and hashed) but still buffered are worth keeping: the next attempt re-hashes the file.
        await writer?.flush().catch(() => undefined);
        await fh.sync().catch(() => undefined);
        await fh.close().catch(() => undefined);
      }
      if (signal?.aborted) throw new RetryAbort(toError(signal.reason));
      if (attemptController.signal.aborted) throw attemptController.signal.reason as Error;
      throw err;
    } finally {
      clearInterval(stallTimer);
    }
  };

  // p-retry re-checks its signal after a successful attempt; give it one that stops following the caller's
  // signal at the commit point.
  const retryController = new AbortController();
  const onAbort = (): void => {
    if (!committed) retryController.abort(signal?.reason);
  };
  signal?.addEventListener('abort', onAbort, { once: true });
  if (signal?.aborted) onAbort();
  try {
    return await pRetry(
      async () => {
        try {
          return await attempt();
        } catch (err) {
          if (err instanceof RetryAbort) throw err;
          if (err instanceof IntegrityError) throw new RetryAbort(err);
          if (err instanceof HttpStatusError && !err.retryable) throw new RetryAbort(err);
          const code = (err as NodeJS.ErrnoException).code;
          if (code && NON_RETRYABLE_FS_CODES.has(code)) throw new RetryAbort(toError(err));
          if (err instanceof HttpStatusError || err instanceof TransientDownloadError) throw err;
          // fetch/undici network failures (TypeError 'fetch failed' / 'terminated', socket errors): retry.
          throw new TransientDownloadError(`network error: ${(err as Error).message ?? String(err)}`, { cause: err });
        }
      },
      {
        retries,
        minTimeout: minRetryDelayMs,
        maxTimeout: maxRetryDelayMs,
        factor: 2,
        randomize: true,
        signal: retryController.signal,
        unref: true,
      },
    );
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
}

function toError(reason: unknown): Error {
  return reason instanceof Error ? reason : new Error(String(reason));
}

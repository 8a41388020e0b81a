// Resumable, verified download of one blob (an Azure Blob SAS URL) into place.
//
// Bytes go to a partial file first. A later attempt (same process or after a restart) re-hashes what the partial
// already holds and asks only for the rest with `Range: bytes=N-`. The file is renamed into place only after its
// size and sha256 match what the control plane promised, so a corrupt or truncated file is never visible at `dest`.
// Pieces: http-get.ts (one GET), chunk-writer.ts (pipelined writes), attempt.ts (one attempt), errors.ts; this file
// validates the request and runs the retry loop.
import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import pRetry, { AbortError as RetryAbort } from 'p-retry';
import { attemptDownload, fileSize, type AttemptContext, type DownloadProgress, type DownloadResult, type DownloadState } from './attempt.js';
import { HttpStatusError, IntegrityError, TransientDownloadError, toError } from './errors.js';
import { httpGetter } from './http-get.js';

export type { DownloadProgress, DownloadResult } from './attempt.js';
export { HttpStatusError, IntegrityError, TransientDownloadError, redactUrl } from './errors.js';

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
  /**
   * A fresh URL for the same blob. Read URLs are short-lived; when the server answers 403 (an expired SAS) the
   * download asks for one (at most MAX_URL_REFRESHES times) and resumes from its partial. A throw ends the download.
   */
  refreshUrl?: () => Promise<string>;
}

const MAX_URL_REFRESHES = 3;

const NON_RETRYABLE_FS_CODES = new Set(['ENOSPC', 'EDQUOT', 'EACCES', 'EPERM', 'EROFS', 'EISDIR', 'ENOTDIR']);

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
  const expectedSha256 = options.expectedSha256.toLowerCase();
  if (!Number.isSafeInteger(expectedSize) || expectedSize < 0) throw new RangeError(`invalid expectedSize ${expectedSize}`);
  if (!/^[0-9a-f]{64}$/.test(expectedSha256)) throw new RangeError('expectedSha256 must be 64 hex characters');
  signal?.throwIfAborted();

  await mkdir(dirname(partialPath), { recursive: true });
  await mkdir(dirname(dest), { recursive: true });

  const initialPartial = await fileSize(partialPath);
  const state: DownloadState = { bytesTransferred: 0, attempts: 0, committed: false };
  const context: AttemptContext = {
    url,
    dest,
    partialPath,
    expectedSize,
    expectedSha256,
    signal,
    onProgress,
    stallTimeoutMs,
    writeChunkBytes,
    get: httpGetter(options.fetch),
    resumedFromBytes: initialPartial > 0 && initialPartial <= expectedSize ? initialPartial : 0,
  };

  // p-retry re-checks its signal after a successful attempt; give it one that stops following the caller's
  // signal at the commit point.
  const retryController = new AbortController();
  const onAbort = (): void => {
    if (!state.committed) retryController.abort(signal?.reason);
  };
  signal?.addEventListener('abort', onAbort, { once: true });
  if (signal?.aborted) onAbort();
  let refreshes = 0;
  try {
    return await pRetry(
      async () => {
        try {
          return await attemptDownload(context, state);
        } catch (err) {
          if (err instanceof RetryAbort) throw err;
          if (err instanceof IntegrityError) throw new RetryAbort(err);
          if (err instanceof HttpStatusError && err.status === 403 && options.refreshUrl && refreshes < MAX_URL_REFRESHES) {
            refreshes += 1;
            try {
              context.url = await options.refreshUrl();
            } catch (refreshErr) {
              throw new RetryAbort(toError(refreshErr));
            }
            throw new TransientDownloadError('download URL expired (403); resuming with a fresh one');
          }
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

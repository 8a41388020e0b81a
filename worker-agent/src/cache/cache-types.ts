// The public shapes of LoraCache: its options, what acquire() returns, what inventory() reports.
import type { CacheCounters } from '../../../contract/machines.js';
import type { DownloadOptions } from '../download/download.js';
import type { CacheLogger } from './budget.js';

export type CacheDownloaderOptions = Pick<
  DownloadOptions,
  'retries' | 'minRetryDelayMs' | 'maxRetryDelayMs' | 'stallTimeoutMs' | 'writeChunkBytes' | 'fetch'
>;

export interface LoraCacheOptions {
  cacheDir: string;
  /** Default 50 GiB (ADR-010). */
  budgetBytes?: number;
  /** Entries unused for this long are removed by sweepTtl. Default 7 days (ADR-010). */
  ttlMs?: number;
  /** Keys never evicted nor expired (ADR-010 is_ignore), e.g. system LoRAs configured by the operator. */
  pinned?: readonly string[];
  download?: CacheDownloaderOptions;
  logger?: CacheLogger;
  /** Epoch milliseconds; injectable for tests. Durations (downloadMs) use a monotonic clock regardless. */
  clock?: () => number;
  /** Leftover partial downloads older than this are deleted on open and by sweepTtl. Default 24 h. */
  partialMaxAgeMs?: number;
  /** A re-download this soon after an eviction counts as thrash. Default 1 h. */
  thrashWindowMs?: number;
  /** Free disk every download must leave (CACHE_DISK_RESERVE); default 1 GiB. disk-space.ts. */
  diskReserveBytes?: number;
  /** Free bytes of the cache's file system; injectable for tests (default statfs). */
  freeDisk?: (dir: string) => number | undefined;
}

export interface AcquireResult {
  /** key → absolute file path, for every LoRA of the job. */
  paths: Record<string, string>;
  /** Keys that were already cached. */
  hit: string[];
  /** Keys that had to be downloaded (by this call, or by a concurrent one it waited for). */
  missing: string[];
  downloadMs: number;
  /** Network bytes of the downloads this call started (a download shared with a concurrent call counts once). */
  bytesDownloaded: number;
  /** Lets the entries be evicted again. Idempotent. */
  release(): void;
}

export interface CacheInventory {
  user: string[];
  shared: string[];
  /** Bytes of registered (complete, verified) files. */
  usedBytes: number;
  /** Bytes reserved for downloads in flight plus leftover partial files. */
  reservedBytes: number;
  budgetBytes: number;
  /** Free bytes on the cache's file system (0 when unknown). */
  freeDiskBytes: number;
  /** Moving average of completed downloads' throughput, when any has been measured. */
  downloadBytesPerSecond?: number;
  counters: CacheCounters;
}

export type AcquireProgress = (key: string, bytes: number, total: number) => void;

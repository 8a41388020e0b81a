// One missing LoRA into the cache (lora-cache.ts calls it once per single flight): reserve room under the byte budget
// (evicting if needed), check the free disk, download and verify (download.ts), make the file read-only, register it
// with its stamp, and keep a moving average of the download throughput for the heartbeat.
import { chmodSync, rmSync } from 'node:fs';
import { downloadVerified, redactUrl } from '../download/download.js';
import type { CacheBudget, CacheLogger } from './budget.js';
import type { CacheDb } from './cache-db.js';
import type { CacheDownloaderOptions } from './cache-types.js';
import { asDiskFull, ensureDiskRoom, fileSizeOrZero, isDiskFull } from './disk-space.js';
import { relativePath, type CacheLayout, type WantedLora } from './layout.js';
import { fileStamp, type TamperGuard } from './tamper.js';

export interface CacheDownloaderParts {
  cacheDir: string;
  layout: CacheLayout;
  budget: CacheBudget;
  tamper: TamperGuard;
  pinned: ReadonlySet<string>;
  options: CacheDownloaderOptions;
  log: CacheLogger;
  clock: () => number;
  thrashWindowMs: number;
  diskReserveBytes: number;
  freeDisk: (dir: string) => number | undefined;
  /** The open DB; throws once the cache is closed. */
  requireDb: () => CacheDb;
  /** The open DB, or undefined once the cache is closed. */
  openDb: () => CacheDb | undefined;
}

export class CacheDownloader {
  private throughputEwma: number | undefined;

  constructor(private readonly c: CacheDownloaderParts) {}

  /** Moving average of completed downloads' throughput (bytes/s), once one over 1 MiB has been measured. */
  get bytesPerSecond(): number | undefined {
    return this.throughputEwma;
  }

  /** Reserve room (evicting if needed), download and verify, register. */
  async download(w: WantedLora, signal: AbortSignal, onProgress: (bytes: number, total: number) => void): Promise<{ bytes: number }> {
    const { c } = this;
    const db = c.requireDb();
    const partialPath = c.layout.partialPathFor(w);
    c.budget.reserve(db, w, partialPath);
    const t0 = performance.now();
    try {
      ensureDiskRoom({
        dir: c.cacheDir,
        key: w.key,
        needBytes: Math.max(0, w.sizeBytes - fileSizeOrZero(partialPath)),
        reserveBytes: c.diskReserveBytes,
        entries: c.budget.entries(db),
        evict: (keys) => c.budget.evict(db, keys, 'disk'),
        free: c.freeDisk,
      });
      const result = await downloadVerified({
        ...c.options,
        url: w.url,
        refreshUrl: w.refreshUrl,
        dest: c.layout.pathFor(w.kind, w.key),
        partialPath,
        expectedSize: w.sizeBytes,
        expectedSha256: w.sha256,
        signal,
        onProgress: (p) => onProgress(p.bytes, p.total),
      });
      const liveDb = c.requireDb();
      const now = c.clock();
      // Read-only for everyone (the job user is not the owner anyway); the stamp after that is the reference.
      const dest = c.layout.pathFor(w.kind, w.key);
      chmodSync(dest, 0o444);
      const stamp = fileStamp(dest);
      const thrash = liveDb.recordDownload(
        {
          key: w.key,
          kind: w.kind,
          path: relativePath(w.kind, w.key),
          size_bytes: w.sizeBytes,
          sha256: w.sha256,
          last_used: now,
          use_count: 1,
          downloaded_at: now,
          pinned: c.pinned.has(w.key) ? 1 : 0,
          in_use: c.budget.inUseCount(w.key),
          stamp: stamp ?? null,
        },
        result.bytesTransferred,
        now,
        c.thrashWindowMs,
      );
      c.tamper.registered(w, stamp);
      const seconds = (performance.now() - t0) / 1000;
      if (result.bytesTransferred > 1024 * 1024 && seconds > 0) {
        const rate = result.bytesTransferred / seconds;
        this.throughputEwma = this.throughputEwma === undefined ? rate : 0.7 * this.throughputEwma + 0.3 * rate;
      }
      c.log.info(
        {
          key: w.key,
          bytes: result.bytesTransferred,
          resumedFrom: result.resumedFromBytes,
          attempts: result.attempts,
          ms: Math.round(seconds * 1000),
          thrash,
        },
        'cache: downloaded and verified',
      );
      return { bytes: result.bytesTransferred };
    } catch (err) {
      c.log.warn({ key: w.key, url: redactUrl(w.url), err: (err as Error)?.message }, 'cache: download failed');
      if (isDiskFull(err)) {
        // Out of space: keep nothing half-written (a partial, or a file renamed into place but never registered).
        rmSync(partialPath, { force: true });
        if (!c.openDb()?.get(w.key)) rmSync(c.layout.pathFor(w.kind, w.key), { force: true });
      }
      throw asDiskFull(err);
    } finally {
      c.budget.unreserve(w.key, partialPath);
    }
  }
}

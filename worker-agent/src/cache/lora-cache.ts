// The agent's local LoRA cache: files in a ComfyUI-compatible layout (layout.ts), inventory in SQLite (cache-db.ts),
// a hard byte budget with LRU eviction + inactivity TTL and pinned / in-use protection (budget.ts), startup recovery
// (recovery.ts), single-flight (single-flight.ts) verified downloads (cache-download.ts). This file ties them together
// behind one API.
import { chmodSync, mkdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { ClaimedLora } from '../../../contract/jobs.js';
import { CacheBudget, silentLogger, type CacheLogger } from './budget.js';
import { CacheDb, type LoraKind } from './cache-db.js';
import { CacheDownloader } from './cache-download.js';
import { DEFAULT_DISK_RESERVE_BYTES, asDiskFull, freeDiskBytes } from './disk-space.js';
import { DEFAULT_CACHE_BUDGET_BYTES, DEFAULT_CACHE_TTL_MS, THRASH_WINDOW_MS, planTtlSweep } from './eviction.js';
import {
  CacheLayout,
  InvalidLoraError,
  SHARED_LORA_FILENAME,
  USER_LORA_KEY,
  isEnoent,
  isValidKey,
  normalizeLoras,
  relativePath,
  type WantedLora,
} from './layout.js';
import { enforceBudgetAtOpen, reconcile } from './recovery.js';
import { SingleFlight } from './single-flight.js';
import { TamperGuard } from './tamper.js';
import type { AcquireProgress, AcquireResult, CacheInventory, LoraCacheOptions } from './cache-types.js';

export { CacheFullError, type CacheLogger } from './budget.js';
export { DiskFullError } from './disk-space.js';
export type { AcquireProgress, AcquireResult, CacheDownloaderOptions, CacheInventory, LoraCacheOptions } from './cache-types.js';
export { InvalidLoraError, SHARED_LORA_FILENAME, USER_LORA_KEY } from './layout.js';

export const DEFAULT_PARTIAL_MAX_AGE_MS = 24 * 60 * 60 * 1000;

export class LoraCache {
  readonly cacheDir: string;
  readonly budgetBytes: number;
  readonly ttlMs: number;
  private readonly pinned: Set<string>;
  private readonly log: CacheLogger;
  private readonly clock: () => number;
  private readonly partialMaxAgeMs: number;
  private readonly layout: CacheLayout;
  private readonly budget: CacheBudget;
  private readonly flights = new SingleFlight();
  private readonly tamper: TamperGuard;
  private readonly downloader: CacheDownloader;
  private readonly freeDisk: (dir: string) => number | undefined;

  private db: CacheDb | undefined;

  constructor(options: LoraCacheOptions) {
    this.cacheDir = options.cacheDir;
    this.budgetBytes = options.budgetBytes ?? DEFAULT_CACHE_BUDGET_BYTES;
    this.ttlMs = options.ttlMs ?? DEFAULT_CACHE_TTL_MS;
    this.pinned = new Set(options.pinned ?? []);
    this.log = options.logger ?? silentLogger;
    this.clock = options.clock ?? Date.now;
    this.partialMaxAgeMs = options.partialMaxAgeMs ?? DEFAULT_PARTIAL_MAX_AGE_MS;
    this.freeDisk = options.freeDisk ?? freeDiskBytes;
    if (!Number.isSafeInteger(this.budgetBytes) || this.budgetBytes <= 0) {
      throw new RangeError(`budgetBytes must be a positive integer, got ${this.budgetBytes}`);
    }
    for (const key of this.pinned) {
      if (!USER_LORA_KEY.test(key) && !SHARED_LORA_FILENAME.test(key)) {
        throw new InvalidLoraError(`pinned key ${JSON.stringify(key)} is neither a flat_file_id nor a shared filename`);
      }
    }
    this.layout = new CacheLayout(this.cacheDir);
    this.budget = new CacheBudget(this.layout, this.budgetBytes, this.pinned, this.log, this.clock);
    this.tamper = new TamperGuard(this.log, (w) => this.pathFor(w.kind, w.key));
    this.downloader = new CacheDownloader({
      cacheDir: this.cacheDir,
      layout: this.layout,
      budget: this.budget,
      tamper: this.tamper,
      pinned: this.pinned,
      options: options.download ?? {},
      log: this.log,
      clock: this.clock,
      thrashWindowMs: options.thrashWindowMs ?? THRASH_WINDOW_MS,
      diskReserveBytes: options.diskReserveBytes ?? DEFAULT_DISK_RESERVE_BYTES,
      freeDisk: this.freeDisk,
      requireDb: () => this.requireDb(),
      openDb: () => this.db,
    });
  }

  // ---------------------------------------------------------------- paths

  get dbPath(): string {
    return this.layout.dbPath;
  }

  get partialDir(): string {
    return this.layout.partialDir;
  }

  /** Path relative to cacheDir, as stored in the DB. */
  static relativePath(kind: LoraKind, key: string): string {
    return relativePath(kind, key);
  }

  pathFor(kind: LoraKind, key: string): string {
    return this.layout.pathFor(kind, key);
  }

  static isValidKey(kind: LoraKind, key: string): boolean {
    return isValidKey(kind, key);
  }

  // ---------------------------------------------------------------- lifecycle

  /** Opens the DB and reconciles it with the directory. Call once before anything else. */
  async open(): Promise<void> {
    if (this.db) return;
    for (const dir of this.layout.directories) mkdirSync(dir, { recursive: true });
    // A job user may pass through to the (0444) files it is given, not list or write anything; partials are private.
    for (const dir of [this.layout.kindDir('user'), this.layout.kindDir('shared'), join(this.cacheDir, 'loras')]) chmodSync(dir, 0o711);
    chmodSync(this.partialDir, 0o700);
    const db = new CacheDb(this.dbPath);
    chmodSync(this.dbPath, 0o600);
    this.db = db;
    try {
      db.resetInUse();
      db.setPinned([...this.pinned]);
      reconcile(db, this.layout, this.log, this.clock(), this.partialMaxAgeMs);
      enforceBudgetAtOpen(db, this.budget, this.log);
    } catch (err) {
      this.db = undefined;
      db.close();
      throw err;
    }
  }

  /** Aborts downloads in flight (their partial files stay for a later resume) and closes the DB. */
  async close(): Promise<void> {
    await this.flights.abortAll(new Error('cache closing'));
    this.db?.close();
    this.db = undefined;
  }

  private requireDb(): CacheDb {
    if (!this.db) throw new Error('LoraCache is not open: call open() first');
    return this.db;
  }

  // ---------------------------------------------------------------- acquire / release

  /**
   * Makes every LoRA of a job available locally and protects them until `release()`. Throws InvalidLoraError,
   * CacheFullError, IntegrityError / HttpStatusError / TransientDownloadError from the download, or the
   * signal's reason; on any throw nothing stays marked in use.
   */
  async acquire(
    loras: readonly ClaimedLora[],
    signal?: AbortSignal,
    onProgress?: AcquireProgress,
    refreshUrl?: (key: string) => Promise<string>,
  ): Promise<AcquireResult> {
    const db = this.requireDb();
    const wanted = normalizeLoras(loras).map((w) => (refreshUrl ? { ...w, refreshUrl: () => refreshUrl(w.key) } : w));
    signal?.throwIfAborted();

    const marked: string[] = [];
    try {
      db.transaction(() => {
        for (const w of wanted) {
          this.budget.markInUse(db, w.key);
          marked.push(w.key);
        }
      });
    } catch (err) {
      for (const key of marked) this.budget.dropInUse(key); // the commit failed (SQLITE_FULL): nothing is held
      throw asDiskFull(err);
    }
    let released = false;
    const release = (): void => {
      if (released) return;
      released = true;
      if (!this.db) return; // closed: in_use is process-local and resets on the next open anyway
      const now = this.clock();
      try {
        this.budget.unmarkAll(this.db, wanted.map((w) => w.key), now);
      } catch (err) {
        // SQLITE_FULL and the like: the in-memory counts are already released; the DB's mirror resets on open.
        this.log.error({ err: (err as Error).message }, 'cache: could not record the release in cache.db');
      }
    };

    try {
      // First use since the agent started, or the file's stamp changed: hash it; a mismatch evicts it (tamper.ts).
      await Promise.all(wanted.map((w) => this.tamper.verify(db, w, signal)));
      signal?.throwIfAborted();
      const hit: string[] = [];
      const missing: WantedLora[] = [];
      const now = this.clock();
      db.transaction(() => {
        for (const w of wanted) {
          if (this.isCached(db, w)) {
            db.touch(w.key, now);
            hit.push(w.key);
          } else {
            missing.push(w);
          }
        }
        if (hit.length) db.addCounter('hits', hit.length);
        if (missing.length) db.addCounter('misses', missing.length);
      });

      let bytesDownloaded = 0;
      let downloadMs = 0;
      if (missing.length > 0) {
        const t0 = performance.now();
        // One failure stops the job's other downloads (they would be wasted); the first failure is reported.
        const stop = new AbortController();
        const combined = signal ? AbortSignal.any([signal, stop.signal]) : stop.signal;
        let firstError: unknown;
        const results = await Promise.allSettled(
          missing.map((w) =>
            this.fetchShared(w, combined, onProgress).then(
              (r) => {
                if (r.started) bytesDownloaded += r.bytes;
              },
              (err: unknown) => {
                if (firstError === undefined) firstError = err;
                stop.abort(err);
                throw err;
              },
            ),
          ),
        );
        downloadMs = performance.now() - t0;
        if (results.some((r) => r.status === 'rejected')) {
          throw signal?.aborted ? signal.reason : firstError;
        }
      }

      const paths: Record<string, string> = {};
      for (const w of wanted) paths[w.key] = this.pathFor(w.kind, w.key);
      return { paths, hit, missing: missing.map((w) => w.key), downloadMs, bytesDownloaded, release };
    } catch (err) {
      release();
      throw asDiskFull(err);
    }
  }

  /** A registered row of the same version whose file is still there, with the size and stamp it was verified with. */
  private isCached(db: CacheDb, w: WantedLora): boolean {
    const row = db.get(w.key);
    if (!row) return false;
    if (row.kind !== w.kind) throw new InvalidLoraError(`${w.key} is cached as a ${row.kind} LoRA, claimed as ${w.kind}`);
    if (row.sha256 !== w.sha256) {
      this.log.info({ key: w.key }, 'cache: cached version differs from the claimed one; downloading the new one');
      return false;
    }
    const abs = this.pathFor(w.kind, w.key);
    let size = -1;
    try {
      size = statSync(abs).size;
    } catch (err) {
      if (!isEnoent(err)) throw err;
    }
    if (size !== row.size_bytes || !this.tamper.unchanged(db, w)) {
      this.log.warn({ key: w.key, size }, 'cache: registered file vanished or changed since it was verified; dropping it');
      db.remove(w.key);
      if (size >= 0) rmSync(abs, { force: true });
      return false;
    }
    return true;
  }

  /** Single-flight: concurrent acquires of the same key and version share one download. */
  private fetchShared(
    w: WantedLora,
    signal: AbortSignal,
    onProgress: AcquireProgress | undefined,
  ): Promise<{ bytes: number; started: boolean }> {
    return this.flights.join(
      w,
      signal,
      onProgress ? (b, t) => onProgress(w.key, b, t) : undefined,
      () => this.isCached(this.requireDb(), w),
      (flightSignal, flightProgress) => this.downloader.download(w, flightSignal, flightProgress),
    );
  }

  // ---------------------------------------------------------------- maintenance and reporting

  /** Removes entries unused for longer than ttlMs (never pinned or in-use ones) and old leftover partials. */
  sweepTtl(nowMs: number = this.clock()): string[] {
    const db = this.requireDb();
    const stale = planTtlSweep(this.budget.entries(db), nowMs, this.ttlMs);
    this.budget.evict(db, stale, 'ttl');
    for (const p of this.budget.idlePartials()) {
      if (nowMs - p.mtimeMs >= this.partialMaxAgeMs) rmSync(p.path, { force: true });
    }
    return stale;
  }

  /**
   * An operator's eviction order: removes these entries unless pinned or held by a job (those are skipped and
   * returned as `kept`, with the reason).
   */
  evictUnused(keys: readonly string[]): { evicted: string[]; kept: { key: string; why: string }[] } {
    return this.budget.evictUnused(this.requireDb(), keys);
  }

  /** What room for `bytes` more would evict now (a pre-warm hint checks it before fetching: prewarm-hints.ts). */
  planRoom(bytes: number): ReturnType<CacheBudget['planRoom']> {
    return this.budget.planRoom(this.requireDb(), bytes);
  }

  /** Whether a key is registered (complete and verified). */
  has(key: string): boolean {
    return this.requireDb().get(key) !== undefined;
  }

  /** How many acquires currently hold a key. */
  inUseCount(key: string): number {
    return this.budget.inUseCount(key);
  }

  inventory(): CacheInventory {
    const db = this.requireDb();
    const user: string[] = [];
    const shared: string[] = [];
    let usedBytes = 0;
    for (const r of db.all()) {
      (r.kind === 'user' ? user : shared).push(r.key);
      usedBytes += r.size_bytes;
    }
    const inv: CacheInventory = {
      user,
      shared,
      usedBytes,
      reservedBytes: this.budget.reservedBytes(),
      budgetBytes: this.budgetBytes,
      freeDiskBytes: this.freeDisk(this.cacheDir) ?? 0,
      counters: db.counters(),
    };
    const rate = this.downloader.bytesPerSecond;
    if (rate !== undefined) inv.downloadBytesPerSecond = Math.round(rate);
    return inv;
  }
}

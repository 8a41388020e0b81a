// The agent's local LoRA cache: files in a ComfyUI-compatible layout, inventory in SQLite, a hard byte budget
// (LRU eviction + inactivity TTL), pinned and in-use protection, single-flight verified downloads.
//
// Layout under cacheDir:
//   loras/user/<flat_file_id>.safetensors   user LoRAs
//   loras/shared/<filename>                 shared (system) LoRAs
//   partial/<kind>.<key>.<sha16>.part       downloads in progress (resumable)
//   cache.db                                inventory, eviction history, counters
//
// Budget invariant: bytes of registered files + bytes reserved for downloads in flight + bytes of leftover partial
// files ≤ budgetBytes, at every point where control returns to the event loop. Room is made (evictions happen)
// synchronously, together with the reservation, before a download starts.
import { mkdirSync, readdirSync, rmSync, statSync, statfsSync, type Dirent } from 'node:fs';
import { join } from 'node:path';
import type { ClaimedLora } from '../../../contract/jobs.js';
import type { CacheCounters } from '../../../contract/machines.js';
import { downloadVerified, redactUrl, type DownloadOptions } from '../download/download.js';
import { CacheDb, type CacheRow, type LoraKind } from './cache-db.js';
import {
  DEFAULT_CACHE_BUDGET_BYTES,
  DEFAULT_CACHE_TTL_MS,
  THRASH_WINDOW_MS,
  formatBytes,
  planEviction,
  planTtlSweep,
  type CacheEntryLike,
} from './eviction.js';

/** Same rules as contract/ids.ts; repeated here on purpose because they are what keeps keys out of other paths. */
export const USER_LORA_KEY = /^lora_[0-9a-z]{26}$/;
export const SHARED_LORA_FILENAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,114}\.safetensors$/;
const PARTIAL_NAME = /^(user|shared)\.(.+)\.([0-9a-f]{16})\.part$/;

export const DEFAULT_PARTIAL_MAX_AGE_MS = 24 * 60 * 60 * 1000;

/** Room for a LoRA cannot be made: everything left is pinned, in use or being downloaded. Retryable elsewhere. */
export class CacheFullError extends Error {
  override readonly name = 'CacheFullError';
  constructor(
    message: string,
    readonly key: string,
  ) {
    super(message);
  }
}

/** A claimed LoRA whose key, hash, size or URL is malformed. Not retryable. */
export class InvalidLoraError extends Error {
  override readonly name = 'InvalidLoraError';
}

export interface CacheLogger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

const silentLogger: CacheLogger = { debug() {}, info() {}, warn() {}, error() {} };

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

interface WantedLora {
  kind: LoraKind;
  key: string;
  sizeBytes: number;
  sha256: string;
  url: string;
}

interface Flight {
  sha256: string;
  controller: AbortController;
  promise: Promise<{ bytes: number }>;
  waiters: number;
  listeners: Set<(bytes: number, total: number) => void>;
}

export type AcquireProgress = (key: string, bytes: number, total: number) => void;

const isEnoent = (err: unknown): boolean => (err as NodeJS.ErrnoException)?.code === 'ENOENT';

export class LoraCache {
  readonly cacheDir: string;
  readonly budgetBytes: number;
  readonly ttlMs: number;
  private readonly pinned: Set<string>;
  private readonly downloadOptions: CacheDownloaderOptions;
  private readonly log: CacheLogger;
  private readonly clock: () => number;
  private readonly partialMaxAgeMs: number;
  private readonly thrashWindowMs: number;

  private db: CacheDb | undefined;
  /** key → number of acquires holding it (the truth; mirrored into the DB's in_use column). */
  private readonly inUse = new Map<string, number>();
  /** key → bytes promised to its download in flight. */
  private readonly reservations = new Map<string, number>();
  /** partial file paths owned by downloads in flight. */
  private readonly activePartials = new Set<string>();
  private readonly flights = new Map<string, Flight>();
  private throughputEwma: number | undefined;

  constructor(options: LoraCacheOptions) {
    this.cacheDir = options.cacheDir;
    this.budgetBytes = options.budgetBytes ?? DEFAULT_CACHE_BUDGET_BYTES;
    this.ttlMs = options.ttlMs ?? DEFAULT_CACHE_TTL_MS;
    this.pinned = new Set(options.pinned ?? []);
    this.downloadOptions = options.download ?? {};
    this.log = options.logger ?? silentLogger;
    this.clock = options.clock ?? Date.now;
    this.partialMaxAgeMs = options.partialMaxAgeMs ?? DEFAULT_PARTIAL_MAX_AGE_MS;
    this.thrashWindowMs = options.thrashWindowMs ?? THRASH_WINDOW_MS;
    if (!Number.isSafeInteger(this.budgetBytes) || this.budgetBytes <= 0) {
      throw new RangeError(`budgetBytes must be a positive integer, got ${this.budgetBytes}`);
    }
    for (const key of this.pinned) {
      if (!USER_LORA_KEY.test(key) && !SHARED_LORA_FILENAME.test(key)) {
        throw new InvalidLoraError(`pinned key ${JSON.stringify(key)} is neither a flat_file_id nor a shared filename`);
      }
    }
  }

  // ---------------------------------------------------------------- paths

  get dbPath(): string {
    return join(this.cacheDir, 'cache.db');
  }

  get partialDir(): string {
    return join(this.cacheDir, 'partial');
  }

  /** Path relative to cacheDir, as stored in the DB. */
  static relativePath(kind: LoraKind, key: string): string {
    return kind === 'user' ? join('loras', 'user', `${key}.safetensors`) : join('loras', 'shared', key);
  }

  pathFor(kind: LoraKind, key: string): string {
    return join(this.cacheDir, LoraCache.relativePath(kind, key));
  }

  private partialPathFor(w: Pick<WantedLora, 'kind' | 'key' | 'sha256'>): string {
    return join(this.partialDir, `${w.kind}.${w.key}.${w.sha256.slice(0, 16)}.part`);
  }

  static isValidKey(kind: LoraKind, key: string): boolean {
    return kind === 'user' ? USER_LORA_KEY.test(key) : SHARED_LORA_FILENAME.test(key);
  }

  // ---------------------------------------------------------------- lifecycle

  /** Opens the DB and reconciles it with the directory. Call once before anything else. */
  async open(): Promise<void> {
    if (this.db) return;
    for (const dir of [join(this.cacheDir, 'loras', 'user'), join(this.cacheDir, 'loras', 'shared'), this.partialDir]) {
      mkdirSync(dir, { recursive: true });
    }
    const db = new CacheDb(this.dbPath);
    this.db = db;
    try {
      db.resetInUse();
      db.setPinned([...this.pinned]);
      this.reconcile(db);
      this.enforceBudgetAtOpen(db);
    } catch (err) {
      this.db = undefined;
      db.close();
      throw err;
    }
  }

  /** Aborts downloads in flight (their partial files stay for a later resume) and closes the DB. */
  async close(): Promise<void> {
    const pending = [...this.flights.values()];
    for (const f of pending) f.controller.abort(new Error('cache closing'));
    await Promise.allSettled(pending.map((f) => f.promise));
    this.db?.close();
    this.db = undefined;
  }

  private requireDb(): CacheDb {
    if (!this.db) throw new Error('LoraCache is not open: call open() first');
    return this.db;
  }

  private reconcile(db: CacheDb): void {
    const now = this.clock();
    const known = new Map<string, CacheRow>();
    for (const row of db.all()) {
      if (!LoraCache.isValidKey(row.kind, row.key)) {
        this.log.warn({ key: row.key }, 'cache: dropping row with an invalid key');
        db.remove(row.key);
        continue;
      }
      const rel = LoraCache.relativePath(row.kind, row.key);
      const abs = join(this.cacheDir, rel);
      let size = -1;
      try {
        const st = statSync(abs);
        if (st.isFile()) size = st.size;
      } catch (err) {
        if (!isEnoent(err)) throw err;
      }
      if (size < 0) {
        this.log.warn({ key: row.key }, 'cache: file missing, dropping its row');
        db.remove(row.key);
        continue;
      }
      if (size !== row.size_bytes) {
        this.log.warn({ key: row.key, size, expected: row.size_bytes }, 'cache: file has the wrong size, deleting it');
        db.remove(row.key);
        rmSync(abs, { force: true });
        continue;
      }
      if (row.path !== rel) db.upsert({ ...row, path: rel });
      known.set(abs, row);
    }

    // Files nobody registered: a crash between rename and insert, or something copied in. Content unknown: delete.
    for (const kind of ['user', 'shared'] as const) {
      const dir = join(this.cacheDir, 'loras', kind);
      for (const ent of readdirSync(dir, { withFileTypes: true })) {
        const abs = join(dir, ent.name);
        if (!ent.isFile()) {
          this.log.warn({ path: abs }, 'cache: leaving a non-file entry alone');
          continue;
        }
        if (!known.has(abs)) {
          this.log.warn({ path: abs }, 'cache: deleting a file without an inventory row');
          rmSync(abs, { force: true });
        }
      }
    }

    // Partial downloads: keep young ones for resume, unless the same version is already registered.
    for (const ent of readdirSync(this.partialDir, { withFileTypes: true })) {
      const abs = join(this.partialDir, ent.name);
      if (!ent.isFile()) continue;
      const m = PARTIAL_NAME.exec(ent.name);
      const kind = m?.[1] as LoraKind | undefined;
      const key = m?.[2];
      let keep = !!(kind && key && LoraCache.isValidKey(kind, key));
      if (keep && key) {
        const row = db.get(key);
        if (row && row.sha256.startsWith(m![3]!)) keep = false;
      }
      if (keep) {
        const age = now - statSync(abs).mtimeMs;
        keep = age < this.partialMaxAgeMs;
      }
      if (!keep) {
        this.log.info({ path: abs }, 'cache: deleting a stale partial download');
        rmSync(abs, { force: true });
      }
    }
  }

  /** A smaller budget than last time, or partials left by a crash: get back under budget before serving. */
  private enforceBudgetAtOpen(db: CacheDb): void {
    const partials = this.idlePartials().sort((a, b) => a.mtimeMs - b.mtimeMs);
    let partialBytes = partials.reduce((s, p) => s + p.size, 0);
    const registered = db.usedBytes();
    for (const p of partials) {
      if (registered + partialBytes <= this.budgetBytes) break;
      rmSync(p.path, { force: true });
      partialBytes -= p.size;
    }
    if (registered > this.budgetBytes) {
      const plan = planEviction(this.entries(db), 0, this.budgetBytes);
      if ('error' in plan) {
        this.log.error({ error: plan.error }, 'cache: over budget and cannot evict (pinned entries exceed the budget)');
        return;
      }
      this.evict(db, plan.evict, 'lru');
    }
  }

  // ---------------------------------------------------------------- acquire / release

  /**
   * Makes every LoRA of a job available locally and protects them until `release()`. Throws InvalidLoraError,
   * CacheFullError, IntegrityError / HttpStatusError / TransientDownloadError from the download, or the
   * signal's reason; on any throw nothing stays marked in use.
   */
  async acquire(loras: readonly ClaimedLora[], signal?: AbortSignal, onProgress?: AcquireProgress): Promise<AcquireResult> {
    const db = this.requireDb();
    const wanted = normalizeLoras(loras);
    signal?.throwIfAborted();

    db.transaction(() => {
      for (const w of wanted) this.markInUse(db, w.key);
    });
    let released = false;
    const release = (): void => {
      if (released) return;
      released = true;
      if (!this.db) return; // closed: in_use is process-local and resets on the next open anyway
      const now = this.clock();
      this.db.transaction(() => {
        for (const w of wanted) this.unmarkInUse(this.db!, w.key, now);
      });
    };

    try {
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
      throw err;
    }
  }

  private markInUse(db: CacheDb, key: string): void {
    const n = (this.inUse.get(key) ?? 0) + 1;
    this.inUse.set(key, n);
    db.setInUse(key, n);
  }

  private unmarkInUse(db: CacheDb, key: string, now: number): void {
    const n = Math.max(0, (this.inUse.get(key) ?? 0) - 1);
    if (n === 0) this.inUse.delete(key);
    else this.inUse.set(key, n);
    db.setInUse(key, n);
    db.touch(key, now, 0); // LRU and TTL count from the end of the last use
  }

  /** A registered row of the same version whose file is still there with the right size. */
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
    if (size !== row.size_bytes) {
      this.log.warn({ key: w.key, size }, 'cache: registered file vanished or changed size; dropping it');
      db.remove(w.key);
      if (size >= 0) rmSync(abs, { force: true });
      return false;
    }
    return true;
  }

  /** Single-flight: concurrent acquires of the same key and version share one download. */
  private async fetchShared(
    w: WantedLora,
    signal: AbortSignal,
    onProgress: AcquireProgress | undefined,
  ): Promise<{ bytes: number; started: boolean }> {
    let flight = this.flights.get(w.key);
    while (flight && flight.sha256 !== w.sha256) {
      // Another version of this key is downloading (a shared LoRA replaced upstream): let it finish first.
      await flight.promise.catch(() => undefined);
      signal.throwIfAborted();
      flight = this.flights.get(w.key);
    }
    let started = false;
    if (!flight) {
      if (this.isCached(this.requireDb(), w)) return { bytes: 0, started: false };
      const controller = new AbortController();
      const listeners = new Set<(bytes: number, total: number) => void>();
      const created: Flight = {
        sha256: w.sha256,
        controller,
        waiters: 0,
        listeners,
        promise: this.download(w, controller.signal, (b, t) => {
          for (const l of listeners) l(b, t);
        }).finally(() => {
          if (this.flights.get(w.key) === created) this.flights.delete(w.key);
        }),
      };
      created.promise.catch(() => undefined); // failures are reported to the waiters
      this.flights.set(w.key, created);
      flight = created;
      started = true;
    }
    const f = flight;
    f.waiters += 1;
    const listener = onProgress ? (b: number, t: number) => onProgress(w.key, b, t) : undefined;
    if (listener) f.listeners.add(listener);
    return new Promise((resolve, reject) => {
      let settled = false;
      const done = (): void => {
        settled = true;
        signal.removeEventListener('abort', onAbort);
        if (listener) f.listeners.delete(listener);
      };
      const onAbort = (): void => {
        if (settled) return;
        done();
        f.waiters -= 1;
        // Nobody waits any more: stop the transfer (the partial file stays for a later resume).
        if (f.waiters === 0) f.controller.abort(signal.reason);
        reject(signal.reason);
      };
      if (signal.aborted) return onAbort();
      signal.addEventListener('abort', onAbort, { once: true });
      f.promise.then(
        (r) => {
          if (settled) return;
          done();
          resolve({ bytes: r.bytes, started });
        },
        (err: unknown) => {
          if (settled) return;
          done();
          reject(err);
        },
      );
    });
  }

  /** Reserve room (evicting if needed), download and verify, register. */
  private async download(
    w: WantedLora,
    signal: AbortSignal,
    onProgress: (bytes: number, total: number) => void,
  ): Promise<{ bytes: number }> {
    const db = this.requireDb();
    const partialPath = this.partialPathFor(w);
    this.reserve(db, w, partialPath);
    const t0 = performance.now();
    try {
      const result = await downloadVerified({
        ...this.downloadOptions,
        url: w.url,
        dest: this.pathFor(w.kind, w.key),
        partialPath,
        expectedSize: w.sizeBytes,
        expectedSha256: w.sha256,
        signal,
        onProgress: (p) => onProgress(p.bytes, p.total),
      });
      const liveDb = this.requireDb();
      const now = this.clock();
      const thrash = liveDb.recordDownload(
        {
          key: w.key,
          kind: w.kind,
          path: LoraCache.relativePath(w.kind, w.key),
          size_bytes: w.sizeBytes,
          sha256: w.sha256,
          last_used: now,
          use_count: 1,
          downloaded_at: now,
          pinned: this.pinned.has(w.key) ? 1 : 0,
          in_use: this.inUse.get(w.key) ?? 0,
        },
        result.bytesTransferred,
        now,
        this.thrashWindowMs,
      );
      const seconds = (performance.now() - t0) / 1000;
      if (result.bytesTransferred > 1024 * 1024 && seconds > 0) {
        const rate = result.bytesTransferred / seconds;
        this.throughputEwma = this.throughputEwma === undefined ? rate : 0.7 * this.throughputEwma + 0.3 * rate;
      }
      this.log.info(
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
      this.log.warn({ key: w.key, url: redactUrl(w.url), err: (err as Error)?.message }, 'cache: download failed');
      throw err;
    } finally {
      this.reservations.delete(w.key);
      this.activePartials.delete(partialPath);
    }
  }

  /** Synchronously makes room for w and reserves it; throws CacheFullError when it cannot. */
  private reserve(db: CacheDb, w: WantedLora, partialPath: string): void {
    const old = db.get(w.key);
    if (old && old.sha256 !== w.sha256 && (this.inUse.get(w.key) ?? 0) <= 1) {
      // An outdated version nobody else is using: drop it now rather than rename over a registered file, so the
      // DB never describes a file whose bytes changed underneath it (not an eviction: the key stays wanted).
      db.remove(w.key);
      rmSync(this.pathFor(old.kind, old.key), { force: true });
      this.log.info({ key: w.key }, 'cache: removed an outdated version before downloading the new one');
    }
    const entries = this.entries(db);
    const reserved = [...this.reservations.values()].reduce((s, b) => s + b, 0);
    const idle = this.idlePartials().filter((p) => p.path !== partialPath);
    const idleBytes = idle.reduce((s, p) => s + p.size, 0);
    let plan = planEviction(entries, w.sizeBytes, this.budgetBytes, reserved + idleBytes);
    if (idleBytes > 0 && ('error' in plan || plan.evict.length > 0)) {
      // Leftover partials are worth less than complete files: drop them before evicting anything.
      for (const p of idle) rmSync(p.path, { force: true });
      this.log.info({ bytes: idleBytes, files: idle.length }, 'cache: deleted leftover partial downloads to make room');
      plan = planEviction(entries, w.sizeBytes, this.budgetBytes, reserved);
    }
    if ('error' in plan) {
      throw new CacheFullError(`${plan.error} (for ${w.key}, ${formatBytes(w.sizeBytes)})`, w.key);
    }
    this.evict(db, plan.evict, 'lru');
    this.reservations.set(w.key, w.sizeBytes);
    this.activePartials.add(partialPath);
  }

  private evict(db: CacheDb, keys: readonly string[], reason: 'lru' | 'ttl'): void {
    if (keys.length === 0) return;
    const rows = keys.map((k) => db.get(k)).filter((r): r is CacheRow => r !== undefined);
    db.evict(
      rows.map((r) => r.key),
      this.clock(),
      reason,
    );
    for (const r of rows) {
      rmSync(this.pathFor(r.kind, r.key), { force: true });
      this.log.info({ key: r.key, bytes: r.size_bytes, reason }, 'cache: evicted');
    }
  }

  /** Rows as the planner sees them, with the process-local in-use counts and the configured pins. */
  private entries(db: CacheDb): CacheEntryLike[] {
    return db.all().map((r) => ({
      key: r.key,
      sizeBytes: r.size_bytes,
      lastUsedMs: r.last_used,
      pinned: this.pinned.has(r.key),
      inUse: this.inUse.get(r.key) ?? 0,
    }));
  }

  /** Partial files not owned by a download in flight. */
  private idlePartials(): { path: string; size: number; mtimeMs: number }[] {
    let ents: Dirent[];
    try {
      ents = readdirSync(this.partialDir, { withFileTypes: true });
    } catch (err) {
      if (isEnoent(err)) return [];
      throw err;
    }
    const out: { path: string; size: number; mtimeMs: number }[] = [];
    for (const ent of ents) {
      if (!ent.isFile()) continue;
      const path = join(this.partialDir, ent.name);
      if (this.activePartials.has(path)) continue;
      try {
        const st = statSync(path);
        out.push({ path, size: st.size, mtimeMs: st.mtimeMs });
      } catch (err) {
        if (!isEnoent(err)) throw err;
      }
    }
    return out;
  }

  // ---------------------------------------------------------------- maintenance and reporting

  /** Removes entries unused for longer than ttlMs (never pinned or in-use ones) and old leftover partials. */
  sweepTtl(nowMs: number = this.clock()): string[] {
    const db = this.requireDb();
    const stale = planTtlSweep(this.entries(db), nowMs, this.ttlMs);
    this.evict(db, stale, 'ttl');
    for (const p of this.idlePartials()) {
      if (nowMs - p.mtimeMs >= this.partialMaxAgeMs) rmSync(p.path, { force: true });
    }
    return stale;
  }

  /** Whether a key is registered (complete and verified). */
  has(key: string): boolean {
    return this.requireDb().get(key) !== undefined;
  }

  /** How many acquires currently hold a key. */
  inUseCount(key: string): number {
    return this.inUse.get(key) ?? 0;
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
    const reservedBytes =
      [...this.reservations.values()].reduce((s, b) => s + b, 0) +
      this.idlePartials().reduce((s, p) => s + p.size, 0);
    let freeDiskBytes = 0;
    try {
      const fs = statfsSync(this.cacheDir);
      freeDiskBytes = Number(fs.bavail) * Number(fs.bsize);
    } catch {
      // unknown
    }
    const inv: CacheInventory = {
      user,
      shared,
      usedBytes,
      reservedBytes,
      budgetBytes: this.budgetBytes,
      freeDiskBytes,
      counters: db.counters(),
    };
    if (this.throughputEwma !== undefined) inv.downloadBytesPerSecond = Math.round(this.throughputEwma);
    return inv;
  }
}

/** Validates and de-duplicates a job's LoRAs. */
function normalizeLoras(loras: readonly ClaimedLora[]): WantedLora[] {
  const byKey = new Map<string, WantedLora>();
  for (const l of loras) {
    if (l.kind !== 'user' && l.kind !== 'shared') throw new InvalidLoraError(`unknown LoRA kind ${String(l.kind)}`);
    if (!LoraCache.isValidKey(l.kind, l.key)) {
      throw new InvalidLoraError(`invalid ${l.kind} LoRA key ${JSON.stringify(String(l.key).slice(0, 200))}`);
    }
    if (!Number.isSafeInteger(l.size_bytes) || l.size_bytes < 0) {
      throw new InvalidLoraError(`invalid size_bytes ${l.size_bytes} for ${l.key}`);
    }
    if (typeof l.sha256 !== 'string' || !/^[0-9a-fA-F]{64}$/.test(l.sha256)) {
      throw new InvalidLoraError(`invalid sha256 for ${l.key}`);
    }
    let url: URL;
    try {
      url = new URL(l.download_url);
    } catch {
      throw new InvalidLoraError(`invalid download_url for ${l.key}`);
    }
    if (url.protocol !== 'https:' && url.protocol !== 'http:') {
      throw new InvalidLoraError(`download_url for ${l.key} must be http(s)`);
    }
    const w: WantedLora = { kind: l.kind, key: l.key, sizeBytes: l.size_bytes, sha256: l.sha256.toLowerCase(), url: l.download_url };
    const prev = byKey.get(l.key);
    if (prev && (prev.sha256 !== w.sha256 || prev.kind !== w.kind || prev.sizeBytes !== w.sizeBytes)) {
      throw new InvalidLoraError(`${l.key} is listed twice with different contents`);
    }
    byKey.set(l.key, w);
  }
  return [...byKey.values()];
}

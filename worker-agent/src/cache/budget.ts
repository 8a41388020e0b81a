// The cache's byte budget: what is in use, what is reserved for downloads in flight, and eviction to make room.
//
// Budget invariant: bytes of registered files + bytes reserved for downloads in flight + bytes of leftover partial
// files ≤ budgetBytes, at every point where control returns to the event loop. Room is made (evictions happen)
// synchronously, together with the reservation, before a download starts.
import { rmSync } from 'node:fs';
import type { CacheDb, CacheRow, EvictionReason } from './cache-db.js';
import { formatBytes, planEviction, type CacheEntryLike } from './eviction.js';
import type { CacheLayout, PartialFile, WantedLora } from './layout.js';

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

export interface CacheLogger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export const silentLogger: CacheLogger = { debug() {}, info() {}, warn() {}, error() {} };

export class CacheBudget {
  /** key → number of acquires holding it (the truth; mirrored into the DB's in_use column). */
  private readonly inUse = new Map<string, number>();
  /** key → bytes promised to its download in flight. */
  private readonly reservations = new Map<string, number>();
  /** partial file paths owned by downloads in flight. */
  private readonly activePartials = new Set<string>();

  constructor(
    private readonly layout: CacheLayout,
    readonly budgetBytes: number,
    private readonly pinned: ReadonlySet<string>,
    private readonly log: CacheLogger,
    private readonly clock: () => number,
  ) {}

  inUseCount(key: string): number {
    return this.inUse.get(key) ?? 0;
  }

  markInUse(db: CacheDb, key: string): void {
    const n = this.inUseCount(key) + 1;
    this.inUse.set(key, n);
    try {
      db.setInUse(key, n);
    } catch (err) {
      this.dropInUse(key); // e.g. SQLITE_FULL: the acquire fails, so nothing may stay marked
      throw err;
    }
  }

  /**
   * Releases keys held by one acquire: the in-memory counts (the truth) first, all of them, then their mirror and
   * last use in the DB, which may fail (SQLITE_FULL) without leaving anything held.
   */
  unmarkAll(db: CacheDb, keys: readonly string[], now: number): void {
    for (const key of keys) {
      const n = Math.max(0, this.inUseCount(key) - 1);
      if (n === 0) this.inUse.delete(key);
      else this.inUse.set(key, n);
    }
    db.transaction(() => {
      for (const key of keys) {
        db.setInUse(key, this.inUseCount(key));
        db.touch(key, now, 0); // LRU and TTL count from the end of the last use
      }
    });
  }

  /** Forgets an in-memory mark whose DB transaction failed. */
  dropInUse(key: string): void {
    const n = this.inUseCount(key) - 1;
    if (n <= 0) this.inUse.delete(key);
    else this.inUse.set(key, n);
  }

  /** Partial files not owned by a download in flight. */
  idlePartials(): PartialFile[] {
    return this.layout.idlePartials(this.activePartials);
  }

  /** Bytes reserved for downloads in flight plus leftover partial files. */
  reservedBytes(): number {
    return this.reservationBytes() + this.idlePartials().reduce((s, p) => s + p.size, 0);
  }

  private reservationBytes(): number {
    return [...this.reservations.values()].reduce((s, b) => s + b, 0);
  }

  /** Synchronously makes room for w and reserves it; throws CacheFullError when it cannot. */
  reserve(db: CacheDb, w: WantedLora, partialPath: string): void {
    const old = db.get(w.key);
    if (old && old.sha256 !== w.sha256 && this.inUseCount(w.key) <= 1) {
      // An outdated version nobody else is using: drop it now rather than rename over a registered file, so the
      // DB never describes a file whose bytes changed underneath it (not an eviction: the key stays wanted).
      db.remove(w.key);
      rmSync(this.layout.pathFor(old.kind, old.key), { force: true });
      this.log.info({ key: w.key }, 'cache: removed an outdated version before downloading the new one');
    }
    const entries = this.entries(db);
    const reserved = this.reservationBytes();
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

  /** The download of `key` ended (either way): its reservation and partial file are no longer held. */
  unreserve(key: string, partialPath: string): void {
    this.reservations.delete(key);
    this.activePartials.delete(partialPath);
  }

  evict(db: CacheDb, keys: readonly string[], reason: EvictionReason): void {
    if (keys.length === 0) return;
    const rows = keys.map((k) => db.get(k)).filter((r): r is CacheRow => r !== undefined);
    db.evict(
      rows.map((r) => r.key),
      this.clock(),
      reason,
    );
    for (const r of rows) {
      rmSync(this.layout.pathFor(r.kind, r.key), { force: true });
      this.log.info({ key: r.key, bytes: r.size_bytes, reason }, 'cache: evicted');
    }
  }

  /** An operator's eviction order: these keys unless pinned or held by a job (those are returned as `kept`). */
  evictUnused(db: CacheDb, keys: readonly string[]): { evicted: string[]; kept: { key: string; why: string }[] } {
    const entries = new Map(this.entries(db).map((e) => [e.key, e]));
    const evicted: string[] = [];
    const kept: { key: string; why: string }[] = [];
    for (const key of keys) {
      const e = entries.get(key);
      if (!e) continue;
      if (e.pinned) kept.push({ key, why: 'pinned (PINNED_LORAS)' });
      else if (e.inUse > 0) kept.push({ key, why: 'in use by a running job' });
      else evicted.push(key);
    }
    this.evict(db, evicted, 'admin');
    return { evicted, kept };
  }

  /** Rows as the planner sees them, with the process-local in-use counts and the configured pins. */
  entries(db: CacheDb): CacheEntryLike[] {
    return db.all().map((r) => ({
      key: r.key,
      sizeBytes: r.size_bytes,
      lastUsedMs: r.last_used,
      pinned: this.pinned.has(r.key),
      inUse: this.inUseCount(r.key),
    }));
  }

  /** What making room for `bytes` more would evict now (LRU; never pinned or in use), as entries with their last use. */
  planRoom(db: CacheDb, bytes: number): { evict: CacheEntryLike[] } | { error: string } {
    const entries = this.entries(db);
    const plan = planEviction(entries, bytes, this.budgetBytes, this.reservedBytes());
    if ('error' in plan) return plan;
    const byKey = new Map(entries.map((e) => [e.key, e]));
    return { evict: plan.evict.map((k) => byKey.get(k)!) };
  }
}

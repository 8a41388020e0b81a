// The agent's cache inventory (ADR-010's model_cache.db): one SQLite file per machine, WAL mode.
// Everything here is synchronous (better-sqlite3), so a multi-step change inside `transaction` cannot interleave
// with another part of the agent.
import Database from 'better-sqlite3';
import type { CacheCounters } from '../../../contract/machines.js';

export type LoraKind = 'user' | 'shared';

export interface CacheRow {
  key: string;
  kind: LoraKind;
  /** Relative to the cache directory, e.g. `loras/user/lora_….safetensors`. */
  path: string;
  size_bytes: number;
  sha256: string;
  /** Epoch milliseconds. */
  last_used: number;
  use_count: number;
  downloaded_at: number;
  /** ADR-010 `is_ignore`: 1 = never evicted. Mirrors the operator's configuration on every open. */
  pinned: 0 | 1;
  /** Jobs holding the entry. Process-local truth, mirrored here for operators; reset to 0 on open. */
  in_use: number;
  /**
   * The file's size, inode, mtime and ctime (ns) when it was last verified (tamper.ts): any change means its bytes may
   * have changed. Null for rows an older agent wrote: verified by hash on first use.
   */
  stamp: string | null;
}

export type EvictionReason = 'lru' | 'ttl' | 'admin' | 'disk';

const COUNTER_NAMES = ['hits', 'misses', 'downloads', 'bytes_downloaded', 'evictions', 'thrash'] as const;
type CounterName = (typeof COUNTER_NAMES)[number];

// The `stamp` column was added without a version bump: an older agent (rolling back) ignores it and writes NULL, which
// this one treats as "verify by hash on first use".
const SCHEMA_VERSION = 1;
/** Eviction records are kept this long (thrash needs one hour; the rest is for analysis). */
const EVICTION_HISTORY_MS = 7 * 24 * 60 * 60 * 1000;

export interface CacheDbOptions {
  /** How long a write waits for a lock held by another connection (e.g. an operator's sqlite3 shell). */
  busyTimeoutMs?: number;
}

export class CacheDb {
  private readonly db: Database.Database;
  private readonly stmts;

  constructor(file: string, options: CacheDbOptions = {}) {
    this.db = new Database(file);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma(`busy_timeout = ${Math.max(0, Math.floor(options.busyTimeoutMs ?? 5000))}`);
    this.db.pragma('synchronous = NORMAL');
    this.migrate();
    this.stmts = {
      get: this.db.prepare<[string], CacheRow>('SELECT * FROM loras WHERE key = ?'),
      all: this.db.prepare<[], CacheRow>('SELECT * FROM loras ORDER BY key'),
      upsert: this.db.prepare<CacheRow>(
        `INSERT INTO loras (key, kind, path, size_bytes, sha256, last_used, use_count, downloaded_at, pinned, in_use, stamp)
         VALUES (@key, @kind, @path, @size_bytes, @sha256, @last_used, @use_count, @downloaded_at, @pinned, @in_use, @stamp)
         ON CONFLICT(key) DO UPDATE SET kind = excluded.kind, path = excluded.path, size_bytes = excluded.size_bytes,
           sha256 = excluded.sha256, last_used = excluded.last_used, use_count = excluded.use_count,
           downloaded_at = excluded.downloaded_at, pinned = excluded.pinned, in_use = excluded.in_use, stamp = excluded.stamp`,
      ),
      touch: this.db.prepare<[number, number, string]>(
        'UPDATE loras SET last_used = MAX(last_used, ?), use_count = use_count + ? WHERE key = ?',
      ),
      setStamp: this.db.prepare<[string | null, string]>('UPDATE loras SET stamp = ? WHERE key = ?'),
      setInUse: this.db.prepare<[number, string]>('UPDATE loras SET in_use = ? WHERE key = ?'),
      remove: this.db.prepare<[string]>('DELETE FROM loras WHERE key = ?'),
      recordEviction: this.db.prepare<[string, number, string]>(
        'INSERT INTO evictions (key, evicted_at, reason) VALUES (?, ?, ?)',
      ),
      pruneEvictions: this.db.prepare<[number]>('DELETE FROM evictions WHERE evicted_at < ?'),
      evictedSince: this.db.prepare<[string, number], { n: number }>(
        'SELECT COUNT(*) AS n FROM evictions WHERE key = ? AND evicted_at >= ?',
      ),
      addCounter: this.db.prepare<[number, string]>('UPDATE counters SET value = value + ? WHERE name = ?'),
      counters: this.db.prepare<[], { name: string; value: number }>('SELECT name, value FROM counters'),
      usedBytes: this.db.prepare<[], { total: number | null }>('SELECT SUM(size_bytes) AS total FROM loras'),
    };
  }

  private migrate(): void {
    const version = this.db.pragma('user_version', { simple: true }) as number;
    if (version > SCHEMA_VERSION) {
      throw new Error(`cache database schema ${version} is newer than this agent understands (${SCHEMA_VERSION})`);
    }
    this.db.exec(`
      CREATE TABLE IF NOT EXISTS loras (
        key           TEXT PRIMARY KEY,
        kind          TEXT NOT NULL CHECK (kind IN ('user', 'shared')),
        path          TEXT NOT NULL,
        size_bytes    INTEGER NOT NULL CHECK (size_bytes >= 0),
        sha256        TEXT NOT NULL,
        last_used     INTEGER NOT NULL,
        use_count     INTEGER NOT NULL DEFAULT 0,
        downloaded_at INTEGER NOT NULL,
        pinned        INTEGER NOT NULL DEFAULT 0 CHECK (pinned IN (0, 1)),
        in_use        INTEGER NOT NULL DEFAULT 0 CHECK (in_use >= 0)
      );
      CREATE INDEX IF NOT EXISTS loras_last_used ON loras (last_used);
      CREATE TABLE IF NOT EXISTS evictions (
        key        TEXT NOT NULL,
        evicted_at INTEGER NOT NULL,
        reason     TEXT NOT NULL
      );
      CREATE INDEX IF NOT EXISTS evictions_key_time ON evictions (key, evicted_at);
      CREATE TABLE IF NOT EXISTS counters (
        name  TEXT PRIMARY KEY,
        value INTEGER NOT NULL DEFAULT 0
      );
    `);
    // The file stamp recorded at download / verification (tamper.ts); added in place, see SCHEMA_VERSION.
    const columns = this.db.prepare<[], { name: string }>('PRAGMA table_info(loras)').all();
    if (!columns.some((c) => c.name === 'stamp')) this.db.exec('ALTER TABLE loras ADD COLUMN stamp TEXT');
    const seed = this.db.prepare('INSERT OR IGNORE INTO counters (name, value) VALUES (?, 0)');
    for (const name of COUNTER_NAMES) seed.run(name);
    this.db.pragma(`user_version = ${SCHEMA_VERSION}`);
  }

  /** Runs fn in one SQLite transaction (nested calls become savepoints). */
  transaction<T>(fn: () => T): T {
    return this.db.transaction(fn)();
  }

  get(key: string): CacheRow | undefined {
    return this.stmts.get.get(key);
  }

  all(): CacheRow[] {
    return this.stmts.all.all();
  }

  usedBytes(): number {
    return this.stmts.usedBytes.get()?.total ?? 0;
  }

  upsert(row: CacheRow): void {
    this.stmts.upsert.run(row);
  }

  /** Records a use: last_used moves forward (never back), use_count grows by `uses`. */
  touch(key: string, nowMs: number, uses = 1): void {
    this.stmts.touch.run(nowMs, uses, key);
  }

  setStamp(key: string, stamp: string | null): void {
    this.stmts.setStamp.run(stamp, key);
  }

  setInUse(key: string, count: number): void {
    this.stmts.setInUse.run(count, key);
  }

  /** Crash recovery: a process that is gone holds nothing. */
  resetInUse(): void {
    this.db.exec('UPDATE loras SET in_use = 0 WHERE in_use <> 0');
  }

  /** Makes the pinned column match the operator's list exactly. */
  setPinned(keys: readonly string[]): void {
    this.transaction(() => {
      this.db.exec('UPDATE loras SET pinned = 0 WHERE pinned <> 0');
      const pin = this.db.prepare<[string]>('UPDATE loras SET pinned = 1 WHERE key = ?');
      for (const k of keys) pin.run(k);
    });
  }

  /** Deletes a row without counting an eviction (missing file, replaced version, reconcile). */
  remove(key: string): void {
    this.stmts.remove.run(key);
  }

  /** Deletes rows as evictions: history for thrash detection, the evictions counter. */
  evict(keys: readonly string[], nowMs: number, reason: EvictionReason): void {
    if (keys.length === 0) return;
    this.transaction(() => {
      for (const k of keys) {
        this.stmts.remove.run(k);
        this.stmts.recordEviction.run(k, nowMs, reason);
      }
      this.stmts.addCounter.run(keys.length, 'evictions');
      this.stmts.pruneEvictions.run(nowMs - EVICTION_HISTORY_MS);
    });
  }

  /**
   * Registers a verified download and counts it; a download of a key evicted within `thrashWindowMs` counts as
   * thrash. Returns whether it did.
   */
  recordDownload(row: CacheRow, bytesTransferred: number, nowMs: number, thrashWindowMs: number): boolean {
    return this.transaction(() => {
      this.stmts.upsert.run(row);
      this.stmts.addCounter.run(1, 'downloads');
      this.stmts.addCounter.run(bytesTransferred, 'bytes_downloaded');
      const thrash = (this.stmts.evictedSince.get(row.key, nowMs - thrashWindowMs)?.n ?? 0) > 0;
      if (thrash) this.stmts.addCounter.run(1, 'thrash');
      return thrash;
    });
  }

  addCounter(name: CounterName, by = 1): void {
    this.stmts.addCounter.run(by, name);
  }

  counters(): CacheCounters {
    const out: CacheCounters = { hits: 0, misses: 0, downloads: 0, bytes_downloaded: 0, evictions: 0, thrash: 0 };
    for (const { name, value } of this.stmts.counters.all()) {
      if ((COUNTER_NAMES as readonly string[]).includes(name)) out[name as CounterName] = value;
    }
    return out;
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}

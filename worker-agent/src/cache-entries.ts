// Sizes and last use of the cached LoRAs for the heartbeat (`cache_entries`, GET /machines/{id}): a read-only query on
// the cache's SQLite inventory over a connection of its own (WAL mode lets it read while the cache writes), so the
// cache itself is untouched. Most recently used first, at most REPORTED_CACHE_ENTRIES.
import Database from 'better-sqlite3';
import { REPORTED_CACHE_ENTRIES, type CacheEntry } from '../../contract/machines.js';

interface Row {
  key: string;
  kind: 'user' | 'shared';
  size_bytes: number;
  last_used: number;
  pinned: number;
  in_use: number;
}

export class CacheEntriesReader {
  private readonly db: Database.Database;
  private readonly stmt: Database.Statement<[number], Row>;

  /** `dbPath`: the cache's inventory (LoraCache.dbPath), after the cache has opened (created) it. */
  constructor(dbPath: string) {
    this.db = new Database(dbPath, { readonly: true, fileMustExist: true });
    this.stmt = this.db.prepare<[number], Row>(
      'SELECT key, kind, size_bytes, last_used, pinned, in_use FROM loras ORDER BY last_used DESC, key LIMIT ?',
    );
  }

  read(limit = REPORTED_CACHE_ENTRIES): CacheEntry[] {
    return this.stmt.all(Math.max(0, Math.min(limit, REPORTED_CACHE_ENTRIES))).map((r) => ({
      kind: r.kind,
      key: r.key,
      size_bytes: r.size_bytes,
      last_used_at: new Date(r.last_used).toISOString(),
      pinned: r.pinned === 1,
      in_use: r.in_use,
    }));
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}

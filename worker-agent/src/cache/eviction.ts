// Pure cache planning: which entries to evict to make room, which ones outlived the TTL.
// No I/O here: the agent's SQLite-backed LoraCache and the routing simulator (MemoryLruCache) share these rules.
import type { CacheCounters } from '../../../contract/machines.js';

export const GIB = 1024 ** 3;
/** ADR-010: 50 GB reserved per machine for the LoRA cache. */
export const DEFAULT_CACHE_BUDGET_BYTES = 50 * GIB;
/** ADR-010: clean up LoRAs unused for 7 days. */
export const DEFAULT_CACHE_TTL_MS = 7 * 24 * 60 * 60 * 1000;
/** A key downloaded again within this long after its eviction counts as thrash. */
export const THRASH_WINDOW_MS = 60 * 60 * 1000;

/** The part of a cache entry the planners look at. */
export interface CacheEntryLike {
  key: string;
  sizeBytes: number;
  /** Epoch milliseconds of the last use. */
  lastUsedMs: number;
  /** Operator-pinned (ADR-010 `is_ignore`): never evicted, never expired. */
  pinned: boolean;
  /** Jobs currently holding the entry; anything above 0 protects it. */
  inUse: number;
}

export type EvictionPlan = { evict: string[] } | { error: string };

/** Human-readable byte count in binary units (GiB, MiB, ...), one decimal at most. */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  const text = unit === 0 ? String(Math.round(value)) : value.toFixed(1).replace(/\.0$/, '');
  return `${text} ${units[unit]}`;
}

const isProtected = (e: CacheEntryLike): boolean => e.pinned || e.inUse > 0;

/** Least recently used first; ties broken by key so plans are deterministic. */
function lruOrder(a: CacheEntryLike, b: CacheEntryLike): number {
  return a.lastUsedMs - b.lastUsedMs || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0);
}

/**
 * Which entries to evict, least recently used first, so that `bytesNeeded` more bytes fit in `budgetBytes`.
 * Pinned entries and entries in use are never chosen. `reservedBytes` is space already promised elsewhere
 * (downloads in flight); it counts against the budget but cannot be evicted.
 * Returns `{ error }` (and evicts nothing) when no choice of evictions makes enough room.
 */
export function planEviction(
  entries: readonly CacheEntryLike[],
  bytesNeeded: number,
  budgetBytes: number,
  reservedBytes = 0,
): EvictionPlan {
  if (!Number.isFinite(bytesNeeded) || bytesNeeded < 0) return { error: `invalid size: ${bytesNeeded}` };
  if (bytesNeeded > budgetBytes) {
    return { error: `cache full: need ${formatBytes(bytesNeeded)}, larger than the whole budget of ${formatBytes(budgetBytes)}` };
  }
  let used = reservedBytes;
  for (const e of entries) used += e.sizeBytes;
  let excess = used + bytesNeeded - budgetBytes;
  if (excess <= 0) return { evict: [] };

  const candidates = entries.filter((e) => !isProtected(e)).sort(lruOrder);
  const evict: string[] = [];
  for (const e of candidates) {
    if (excess <= 0) break;
    evict.push(e.key);
    excess -= e.sizeBytes;
  }
  if (excess > 0) {
    let held = 0;
    for (const e of entries) if (isProtected(e)) held += e.sizeBytes;
    const downloading = reservedBytes > 0 ? `, ${formatBytes(reservedBytes)} being downloaded` : '';
    return {
      error:
        `cache full: need ${formatBytes(bytesNeeded)}, budget ${formatBytes(budgetBytes)}, ` +
        `${formatBytes(held)} pinned or in use${downloading}`,
    };
  }
  return { evict };
}

/** Keys unused for longer than `ttlMs` at `nowMs`, never pinned or in-use ones. Oldest first. */
export function planTtlSweep(entries: readonly CacheEntryLike[], nowMs: number, ttlMs: number): string[] {
  return entries
    .filter((e) => !isProtected(e) && nowMs - e.lastUsedMs > ttlMs)
    .sort(lruOrder)
    .map((e) => e.key);
}

export function emptyCounters(): CacheCounters {
  return { hits: 0, misses: 0, downloads: 0, bytes_downloaded: 0, evictions: 0, thrash: 0 };
}

export interface MemoryLruCacheOptions {
  budgetBytes?: number;
  /** Keys never evicted nor expired. */
  pinned?: Iterable<string>;
  /** Epoch milliseconds; the simulator passes its virtual clock. */
  clock?: () => number;
  thrashWindowMs?: number;
}

export type AccessResult =
  | { hit: true; evicted: [] }
  | { hit: false; evicted: string[] }
  | { hit: false; error: string };

/**
 * In-memory twin of the agent's cache for the routing simulator: the same eviction planner, the same counters,
 * no files and no SQLite. Every method that reads the clock also takes an explicit `nowMs`.
 */
export class MemoryLruCache {
  readonly budgetBytes: number;
  private readonly entries = new Map<string, CacheEntryLike>();
  private readonly pinned: Set<string>;
  private readonly lastEvictedAt = new Map<string, number>();
  private readonly clock: () => number;
  private readonly thrashWindowMs: number;
  private used = 0;
  readonly counters: CacheCounters = emptyCounters();

  constructor(options: MemoryLruCacheOptions = {}) {
    this.budgetBytes = options.budgetBytes ?? DEFAULT_CACHE_BUDGET_BYTES;
    this.pinned = new Set(options.pinned ?? []);
    this.clock = options.clock ?? Date.now;
    this.thrashWindowMs = options.thrashWindowMs ?? THRASH_WINDOW_MS;
  }

  get usedBytes(): number {
    return this.used;
  }

  get size(): number {
    return this.entries.size;
  }

  keys(): string[] {
    return [...this.entries.keys()];
  }

  /** A copy of the entries, for inspection. */
  snapshot(): CacheEntryLike[] {
    return [...this.entries.values()].map((e) => ({ ...e }));
  }

  has(key: string): boolean {
    return this.entries.has(key);
  }

  /** Marks a use of a cached key (a hit). Returns false, and counts nothing, when the key is not cached. */
  touch(key: string, nowMs: number = this.clock()): boolean {
    const e = this.entries.get(key);
    if (!e) return false;
    e.lastUsedMs = nowMs;
    return true;
  }

  /**
   * Inserts a downloaded key, evicting least recently used entries first. Counts a download (and thrash when the
   * key was evicted within the thrash window). An existing key is only touched.
   */
  add(key: string, sizeBytes: number, nowMs: number = this.clock()): { evicted: string[] } | { error: string } {
    if (this.touch(key, nowMs)) return { evicted: [] };
    const plan = planEviction([...this.entries.values()], sizeBytes, this.budgetBytes);
    if ('error' in plan) return plan;
    for (const k of plan.evict) this.evict(k, nowMs);
    this.entries.set(key, { key, sizeBytes, lastUsedMs: nowMs, pinned: this.pinned.has(key), inUse: 0 });
    this.used += sizeBytes;
    this.counters.downloads += 1;
    this.counters.bytes_downloaded += sizeBytes;
    const evictedAt = this.lastEvictedAt.get(key);
    if (evictedAt !== undefined && nowMs - evictedAt <= this.thrashWindowMs) this.counters.thrash += 1;
    return { evicted: plan.evict };
  }

  /** One job's use of a key: hit (touch) or miss (download + add), with hit/miss counting. */
  access(key: string, sizeBytes: number, nowMs: number = this.clock()): AccessResult {
    if (this.touch(key, nowMs)) {
      this.counters.hits += 1;
      return { hit: true, evicted: [] };
    }
    this.counters.misses += 1;
    const added = this.add(key, sizeBytes, nowMs);
    return 'error' in added ? { hit: false, error: added.error } : { hit: false, evicted: added.evicted };
  }

  /** Removes a key (counted as an eviction). Returns false when absent. Pinned/in-use checks are the caller's. */
  evict(key: string, nowMs: number = this.clock()): boolean {
    const e = this.entries.get(key);
    if (!e) return false;
    this.entries.delete(key);
    this.used -= e.sizeBytes;
    this.counters.evictions += 1;
    this.lastEvictedAt.set(key, nowMs);
    return true;
  }

  /** Protects a key from eviction while a (simulated) job uses it. */
  markInUse(key: string): void {
    const e = this.entries.get(key);
    if (e) e.inUse += 1;
  }

  release(key: string, nowMs: number = this.clock()): void {
    const e = this.entries.get(key);
    if (e && e.inUse > 0) {
      e.inUse -= 1;
      e.lastUsedMs = nowMs;
    }
  }

  setPinned(key: string, pinned: boolean): void {
    if (pinned) this.pinned.add(key);
    else this.pinned.delete(key);
    const e = this.entries.get(key);
    if (e) e.pinned = pinned;
  }

  /** Drops entries unused for longer than ttlMs (counted as evictions). */
  sweepTtl(nowMs: number, ttlMs: number = DEFAULT_CACHE_TTL_MS): string[] {
    const stale = planTtlSweep([...this.entries.values()], nowMs, ttlMs);
    for (const k of stale) this.evict(k, nowMs);
    return stale;
  }
}

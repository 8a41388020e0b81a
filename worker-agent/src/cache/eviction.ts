// Pure cache planning: which entries to evict to make room, which ones outlived the TTL.
// No I/O here: the agent's SQLite-backed LoraCache and the routing simulator (simulator/memory-cache.ts) share these rules.
import type { CacheCounters } from '../../../contract/machines.js';
import { formatBytes } from '../../../contract/bytes.js';
import { emptyCounters } from '../../../contract/machines.js';

/** Re-exported for the cache's callers (agent, simulator): one definition each, in contract/. */
export { emptyCounters, formatBytes };

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


const isProtected = (e: CacheEntryLike): boolean => e.pinned || e.inUse > 0;

/** Least recently used first; ties broken by key so plans are deterministic. */
export function lruOrder(a: CacheEntryLike, b: CacheEntryLike): number {
  return a.lastUsedMs - b.lastUsedMs || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0);
}

/**
 * Which entries to evict, least recently used first, so that `bytesNeeded` more bytes fit in `budgetBytes`.
 * Pinned entries and entries in use are never chosen. `reservedBytes` is space already promised elsewhere
 * (downloads in flight); it counts against the budget but cannot be evicted.
 * Returns `{ error }` (and evicts nothing) when no choice of evictions makes enough room.
 */
export function planEviction<E extends CacheEntryLike>(
  entries: readonly E[],
  bytesNeeded: number,
  budgetBytes: number,
  reservedBytes = 0,
  /** The agent always plans LRU; the simulator's eviction experiments pass other orders (simulator/eviction-orders.ts). */
  order: (a: E, b: E) => number = lruOrder,
): EvictionPlan {
  if (!Number.isFinite(bytesNeeded) || bytesNeeded < 0) return { error: `invalid size: ${bytesNeeded}` };
  if (bytesNeeded > budgetBytes) {
    return { error: `cache full: need ${formatBytes(bytesNeeded)}, larger than the whole budget of ${formatBytes(budgetBytes)}` };
  }
  let used = reservedBytes;
  for (const e of entries) used += e.sizeBytes;
  let excess = used + bytesNeeded - budgetBytes;
  if (excess <= 0) return { evict: [] };

  const candidates = entries.filter((e) => !isProtected(e)).sort(order);
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


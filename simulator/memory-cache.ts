// The agent's cache rules without files or SQLite, for the routing simulator: the same planner as the agent
// (worker-agent/src/cache/eviction.ts), the same counters.
import type { CacheCounters } from '../contract/machines.js';
import {
  DEFAULT_CACHE_BUDGET_BYTES,
  DEFAULT_CACHE_TTL_MS,
  THRASH_WINDOW_MS,
  emptyCounters,
  planEviction,
  planTtlSweep,
} from '../worker-agent/src/cache/eviction.js';
import { EvictionOrder, type EvictionExperiment, type SimCacheEntry } from './eviction-orders.js';

export interface MemoryLruCacheOptions {
  budgetBytes?: number;
  /** Keys never evicted nor expired. */
  pinned?: Iterable<string>;
  /** Epoch milliseconds; the simulator passes its virtual clock. */
  clock?: () => number;
  thrashWindowMs?: number;
  /** Another eviction order than the agent's LRU (experiments only), and the fleet's copy counts it may need. */
  eviction?: EvictionExperiment;
  fleetCopies?: ReadonlyMap<string, number>;
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
  private readonly entries = new Map<string, SimCacheEntry>();
  private readonly order: EvictionOrder;
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
    this.order = new EvictionOrder(options.eviction, options.fleetCopies);
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
  snapshot(): SimCacheEntry[] {
    return [...this.entries.values()].map((e) => ({ ...e }));
  }

  has(key: string): boolean {
    return this.entries.has(key);
  }

  /** Marks a use of a cached key (a hit). Returns false, and counts nothing, when the key is not cached. */
  touch(key: string, nowMs: number = this.clock()): boolean {
    const e = this.entries.get(key);
    if (!e) return false;
    this.order.used(e, nowMs);
    return true;
  }

  /**
   * Inserts a downloaded key, evicting least recently used entries first. Counts a download (and thrash when the
   * key was evicted within the thrash window). An existing key is only touched.
   */
  add(key: string, sizeBytes: number, nowMs: number = this.clock()): { evicted: string[] } | { error: string } {
    if (this.touch(key, nowMs)) return { evicted: [] };
    this.order.beforePlan(this.entries.values());
    const plan = planEviction([...this.entries.values()], sizeBytes, this.budgetBytes, 0, this.order.compare);
    if ('error' in plan) return plan;
    for (const k of plan.evict) this.evict(k, nowMs);
    this.entries.set(key, { key, sizeBytes, lastUsedMs: nowMs, pinned: this.pinned.has(key), inUse: 0, ...this.order.fresh(key) });
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
    this.order.evicted(e);
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

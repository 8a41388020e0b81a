// Eviction orders the simulator can try in place of the agent's LRU (issue 14: can the cache, rather than routing, move
// W1's bytes and p95?). Experiments only: the agent plans LRU (worker-agent/src/cache/eviction.ts), and these orders
// are not adopted (docs/simulator.md, "Eviction experiments"). `node dist/simulator/experiments.js eviction`.
import { lruOrder, type CacheEntryLike } from '../worker-agent/src/cache/eviction.js';

export type EvictionOrderName =
  /** The agent's: least recently used first. */
  | 'lru'
  /** LRU-2 (O'Neil et al.): entries used once go first, the rest by the time of their second-last use. */
  | 'lru2'
  /** LRU-2 remembering evicted keys (their last use becomes the second-last use when they come back). */
  | 'lru2-history'
  /** LFU with dynamic aging (GDSF with cost = size): priority = the last evicted priority + uses. */
  | 'lfu-da'
  | 'lfu-da-history'
  /** Cooperative: the fleet's only copy of a LoRA looks `paramMs` younger than it is. */
  | 'last-copy'
  /** Size-aware LRU: an entry looks `paramMs` younger per doubling of its size over 150 MiB. */
  | 'size';

export interface EvictionExperiment {
  order: EvictionOrderName;
  paramMs?: number;
}

export interface SimCacheEntry extends CacheEntryLike {
  useCount: number;
  /** The use before the last one (absent: used once). */
  prevUsedMs?: number;
  /** What the ranked orders sort by (lowest goes first). */
  rank: number;
}

const MEDIAN_BYTES = 150 * 1024 * 1024;

function lru2Order(a: SimCacheEntry, b: SimCacheEntry): number {
  const pa = a.prevUsedMs ?? -Infinity;
  const pb = b.prevUsedMs ?? -Infinity;
  return pa !== pb ? (pa < pb ? -1 : 1) : lruOrder(a, b);
}

const rankOrder = (a: SimCacheEntry, b: SimCacheEntry): number => a.rank - b.rank || lruOrder(a, b);

/** Per-cache state of an eviction order: the comparator, and the bookkeeping on use, insert and eviction. */
export class EvictionOrder {
  readonly compare: (a: SimCacheEntry, b: SimCacheEntry) => number;
  private readonly history = new Map<string, { lastUsedMs: number; useCount: number }>();
  private inflation = 0;

  constructor(
    private readonly experiment: EvictionExperiment = { order: 'lru' },
    /** Complete copies of each key in the whole fleet (the `last-copy` order). */
    private readonly fleetCopies?: ReadonlyMap<string, number>,
  ) {
    const o = experiment.order;
    this.compare = o === 'lru' ? lruOrder : o.startsWith('lru2') ? lru2Order : rankOrder;
  }

  private get remembers(): boolean {
    return this.experiment.order.endsWith('-history');
  }

  /** A new entry's use count and second-last use (from the history when the order remembers). */
  fresh(key: string): Pick<SimCacheEntry, 'useCount' | 'prevUsedMs' | 'rank'> {
    const past = this.remembers ? this.history.get(key) : undefined;
    const useCount = (past?.useCount ?? 0) + 1;
    return { useCount, ...(past ? { prevUsedMs: past.lastUsedMs } : {}), rank: this.inflation + useCount };
  }

  used(e: SimCacheEntry, nowMs: number): void {
    e.prevUsedMs = e.lastUsedMs;
    e.lastUsedMs = nowMs;
    e.useCount += 1;
    e.rank = this.inflation + e.useCount;
  }

  evicted(e: SimCacheEntry): void {
    if (this.remembers) this.history.set(e.key, { lastUsedMs: e.lastUsedMs, useCount: e.useCount });
    if (e.rank > this.inflation && this.experiment.order.startsWith('lfu-da')) this.inflation = e.rank;
  }

  /** Ranks that depend on the moment (the fleet's copies, sizes) are computed just before a plan. */
  beforePlan(entries: Iterable<SimCacheEntry>): void {
    const { order, paramMs = 0 } = this.experiment;
    if (order === 'last-copy') {
      for (const e of entries) e.rank = e.lastUsedMs + ((this.fleetCopies?.get(e.key) ?? 1) <= 1 ? paramMs : 0);
    } else if (order === 'size') {
      for (const e of entries) e.rank = e.lastUsedMs + paramMs * Math.log2(e.sizeBytes / MEDIAN_BYTES);
    }
  }
}

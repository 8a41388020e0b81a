// Predictive pre-warming in the simulator (issue 14 item 4): the control plane's side runs the real pure core
// (functions/core/prewarm: the decayed demand per LoRA, the hint choice over HRW homes); the agent's side is modelled
// here with the same rules as worker-agent/src/prewarm-hints.ts: a hint is fetched only while the machine's link is
// idle (no download in flight, one hint at a time), only if it fits the budget without evicting an entry used within
// `minIdleEvictMs` (pins and in-use entries are never evicted), and it is dropped once older than `agentHintTtlMs`.
import { planEviction } from '../worker-agent/src/cache/eviction.js';
import { emptyDemand, observeJobs, type DemandJob, type DemandOptions, type DemandState } from '../functions/core/prewarm/demand.js';
import { chooseHints, DEFAULT_HINT_OPTIONS, type HintMachine, type HintOptions } from '../functions/core/prewarm/hints.js';
import { DEFAULT_PREWARM_SETTINGS, type PrewarmSettings } from '../functions/core/prewarm/settings.js';
import type { MemoryLruCache } from './memory-cache.js';
import type { SimLora } from './workloads.js';

export interface PrewarmSimOptions extends Partial<PrewarmSettings> {}

/** What the model needs of a simulated machine. */
export interface PrewarmMachine {
  index: number;
  id: string;
  slots: number;
  budgetBytes: number;
  cache: MemoryLruCache;
  reportedUser: ReadonlySet<string>;
  reportedShared: ReadonlySet<string>;
  /** Complete on the machine. */
  has(key: string): boolean;
  /** A download (for a job or a hint) of this key is in flight. */
  downloading(key: string): boolean;
  /** Downloads in flight. */
  activeDownloads(): number;
}

export interface PrewarmCounters {
  hints: number;
  fetched: number;
  fetchedBytes: number;
  /** Dropped by the agent: would evict a recently used entry, or no room (pins / in use). */
  declined: number;
  /** Dropped: already there, or older than the agent's TTL before the link was idle. */
  dropped: number;
}

export class PrewarmModel {
  readonly settings: PrewarmSettings;
  readonly counters: PrewarmCounters = { hints: 0, fetched: 0, fetchedBytes: 0, declined: 0, dropped: 0 };
  private demand: DemandState = emptyDemand();
  private seen: DemandJob[] = [];
  /** Control-plane view: key → until when a machine counts as receiving it. */
  private readonly hinted: Map<string, number>[];
  /** Agent view: hints received, oldest first. */
  private readonly inbox: { lora: SimLora; atMs: number }[][];

  constructor(
    private readonly machines: readonly PrewarmMachine[],
    private readonly loraByKey: ReadonlyMap<string, SimLora>,
    options: PrewarmSimOptions = {},
  ) {
    this.settings = { ...DEFAULT_PREWARM_SETTINGS, ...options };
    this.hinted = machines.map(() => new Map());
    this.inbox = machines.map(() => []);
  }

  private demandOptions(): DemandOptions {
    return { halfLifeMs: this.settings.halfLifeMs, minRate: this.settings.minRate, maxEntries: this.settings.maxEntries };
  }

  private hintOptions(): HintOptions {
    return { ...DEFAULT_HINT_OPTIONS, halfLifeMs: this.settings.halfLifeMs, headroom: this.settings.headroom, minColdNeed: this.settings.minColdNeed, maxHints: this.settings.maxHints };
  }

  /** A job arrived; the tick counts it (the real tick sees it among the pending or busy jobs). */
  arrived(job: DemandJob): void {
    this.seen.push(job);
  }

  /** The timer tick: update demand, choose hints. Returns [machine index, LoRA] pairs to deliver at the next heartbeat. */
  tick(nowMs: number, epochMs: number, expectedJobSeconds: number): [number, SimLora][] {
    const now = epochMs + nowMs;
    this.demand = observeJobs(this.demand, this.seen, now, this.demandOptions()).state;
    this.seen = [];
    const views: HintMachine[] = this.machines.map((m, i) => {
      const hinted = this.hinted[i]!;
      for (const [key, until] of hinted) {
        if (until <= nowMs || m.reportedUser.has(key) || m.reportedShared.has(key)) hinted.delete(key);
      }
      return {
        id: m.id,
        pool: 'default',
        slots: m.slots,
        eligible: true,
        cachedUser: m.reportedUser,
        cachedShared: m.reportedShared,
        budgetBytes: m.budgetBytes,
        hinted: new Set(hinted.keys()),
      };
    });
    const out: [number, SimLora][] = [];
    for (const h of chooseHints(this.demand.entries, views, expectedJobSeconds, now, this.hintOptions())) {
      const i = this.machines.findIndex((m) => m.id === h.machineId);
      const lora = this.loraByKey.get(h.key);
      if (i < 0 || !lora) continue;
      this.hinted[i]!.set(h.key, nowMs + this.settings.hintTtlMs);
      this.counters.hints++;
      out.push([i, lora]);
    }
    return out;
  }

  /** The heartbeat answer carried the hint to the agent. */
  deliver(machine: number, lora: SimLora, nowMs: number): void {
    this.inbox[machine]!.push({ lora, atMs: nowMs });
  }

  /**
   * The agent's choice when its link is idle: the next hint worth fetching, with the keys to evict for it (the same LRU
   * plan the cache would make), or undefined. Hints it drops on the way are counted.
   */
  nextFetch(machine: number, nowMs: number): { lora: SimLora } | undefined {
    const m = this.machines[machine]!;
    if (m.activeDownloads() > 0) return undefined;
    const inbox = this.inbox[machine]!;
    while (inbox.length > 0) {
      const { lora, atMs } = inbox.shift()!;
      if (nowMs - atMs > this.settings.agentHintTtlMs || m.has(lora.key) || m.downloading(lora.key)) {
        this.counters.dropped++;
        continue;
      }
      if (!roomWithoutRecentEvictions(m.cache, lora.sizeBytes, m.budgetBytes, nowMs, this.settings.minIdleEvictMs)) {
        this.counters.declined++;
        continue;
      }
      this.counters.fetched++;
      this.counters.fetchedBytes += lora.sizeBytes;
      return { lora };
    }
    return undefined;
  }
}

/** Whether `bytes` fit the budget by evicting only entries unused for at least `minIdleMs` (never pinned or in use). */
export function roomWithoutRecentEvictions(cache: MemoryLruCache, bytes: number, budgetBytes: number, nowMs: number, minIdleMs: number): boolean {
  const entries = cache.snapshot();
  const plan = planEviction(entries, bytes, budgetBytes);
  if ('error' in plan) return false;
  const byKey = new Map(entries.map((e) => [e.key, e]));
  return plan.evict.every((k) => nowMs - byKey.get(k)!.lastUsedMs >= minIdleMs);
}

// The scheduler's predictive pre-fetch hints (heartbeat answer `prewarm` items with `hint: true`, issue 14 item 4),
// fetched at low priority: one at a time, only while no job of this agent is claiming or downloading (it waits, polling
// every `pollMs`), and a job that arrives during a hint's fetch takes the link back (`yieldLink`: the fetch is aborted,
// its partial file stays, and it resumes from there once the link is idle again; a job needing the same LoRA joins the
// transfer instead, single-flight, so it goes on), and only when the file fits the budget by evicting nothing used within `minIdleEvictMs` (pinned and in-use
// entries are never evicted, and the budget always holds: the fetch is an ordinary acquire, released at once). A hint
// that would need more is declined, not retried; a hint not started within `ttlMs` is dropped (its URL expires).
// The check before the fetch and the acquire's own eviction are not atomic: a job may touch an entry in between, and
// the acquire then evicts by LRU as any download does (within budget, never pinned or in use).
import type { PrewarmItem } from '../../contract/machines.js';
import type { LoraCache } from './cache/lora-cache.js';
import type { Logger } from './logger.js';

export type HintCache = Pick<LoraCache, 'acquire' | 'planRoom' | 'has'>;

export interface PrewarmHintOptions {
  cache: HintCache;
  log: Logger;
  signal: AbortSignal;
  /** True while a job of this agent is claiming or downloading its LoRAs. */
  jobDownloading: () => boolean;
  minIdleEvictMs: number;
  ttlMs?: number;
  pollMs?: number;
  maxQueued?: number;
  clock?: () => number;
}

export const HINT_TTL_MS = 5 * 60_000;
/** The abort reason of a yielded fetch; a retry that joins the transfer while it winds down gets it too. */
const LINK_NEEDED = new Error('a job download needs the link');

export class PrewarmHints {
  private readonly queue: { item: PrewarmItem; atMs: number }[] = [];
  private running: Promise<void> = Promise.resolve();
  private active = false;
  private current: { item: PrewarmItem; atMs: number; controller: AbortController } | undefined;
  readonly stats = { fetched: 0, declined: 0, dropped: 0, failed: 0, yielded: 0 };

  constructor(private readonly o: PrewarmHintOptions) {}

  private now(): number {
    return (this.o.clock ?? Date.now)();
  }

  offer(item: PrewarmItem): void {
    if (this.queue.some((q) => q.item.key === item.key)) return;
    this.queue.push({ item, atMs: this.now() });
    if (this.queue.length > (this.o.maxQueued ?? 8)) {
      this.queue.shift();
      this.stats.dropped++;
    }
    if (!this.active) {
      this.active = true;
      this.running = this.drain().finally(() => (this.active = false));
    }
  }

  /** A job arrived: a hint being fetched stops (resumed later from its partial file). */
  yieldLink(): void {
    this.current?.controller.abort(LINK_NEEDED);
  }

  /** Resolves when every queued hint was fetched, declined or dropped (tests, shutdown). */
  idle(): Promise<void> {
    return this.running;
  }

  /** Whether the hint fits without evicting an entry used within minIdleEvictMs; else why not. */
  private refusal(item: PrewarmItem): string | undefined {
    const plan = this.o.cache.planRoom(item.size_bytes);
    if ('error' in plan) return plan.error;
    const recent = plan.evict.filter((e) => this.now() - e.lastUsedMs < this.o.minIdleEvictMs);
    if (recent.length > 0) return `would evict ${recent.length} recently used LoRA(s): ${recent.map((e) => e.key).join(', ')}`;
    return undefined;
  }

  private async drain(): Promise<void> {
    const { log, signal, cache } = this.o;
    while (this.queue.length > 0 && !signal.aborted) {
      if (this.o.jobDownloading()) {
        await new Promise((r) => setTimeout(r, this.o.pollMs ?? 250));
        continue;
      }
      const { item, atMs } = this.queue.shift()!;
      if (this.now() - atMs > (this.o.ttlMs ?? HINT_TTL_MS) || cache.has(item.key)) {
        this.stats.dropped++;
        continue;
      }
      const why = this.refusal(item);
      if (why) {
        this.stats.declined++;
        log.info({ key: item.key, bytes: item.size_bytes, why }, 'pre-warm hint declined');
        continue;
      }
      const controller = new AbortController();
      this.current = { item, atMs, controller };
      try {
        const r = await cache.acquire([item], AbortSignal.any([signal, controller.signal]));
        r.release();
        this.stats.fetched++;
        log.info({ key: item.key, bytes: r.bytesDownloaded }, 'pre-warm hint fetched');
      } catch (err) {
        if (err === LINK_NEEDED && !signal.aborted) {
          this.stats.yielded++;
          this.queue.unshift({ item, atMs });
          log.info({ key: item.key }, 'pre-warm hint paused: a job download needs the link');
          await new Promise((r) => setTimeout(r, this.o.pollMs ?? 250));
        } else {
          this.stats.failed++;
          log.warn({ key: item.key, err: (err as Error)?.message }, 'pre-warm hint failed');
        }
      } finally {
        this.current = undefined;
      }
    }
  }
}

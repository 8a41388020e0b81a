// What an operator asks of this machine through the heartbeat answer: evict LoRAs, pre-warm LoRAs, a drain by an
// admin (informational: the scheduler already sends nothing), warnings about the settings. The cache applies the
// orders under its own rules: evictions skip pinned and in-use entries; a pre-warm is an ordinary acquire (budget,
// pins and in-use protection hold, CacheFullError when there is no room) released at once. One pre-warm at a time.
// A pre-warm item marked `hint` is the scheduler's predictive hint, not an order: it goes to PrewarmHints (low priority,
// may be declined; prewarm-hints.ts), or is ignored when the agent has none.
import type { HeartbeatResponse } from '../../contract/machines.js';
import type { LoraCache } from './cache/lora-cache.js';
import type { Logger } from './logger.js';
import type { PrewarmHints } from './prewarm-hints.js';

export type OrderCache = Partial<Pick<LoraCache, 'evictUnused' | 'acquire'>>;

export class OperatorOrders {
  private adminDrained = false;
  private readonly warned = new Set<string>();
  private prewarming: Promise<void> = Promise.resolve();
  /** Counters for tests and logs. */
  readonly stats = { evicted: 0, prewarmed: 0, prewarmFailed: 0 };

  constructor(private readonly opts: { cache: OrderCache; log: Logger; signal: AbortSignal; hints?: PrewarmHints }) {}

  apply(answer: HeartbeatResponse): void {
    const { log, cache } = this.opts;
    const drained = answer.admin_drained === true;
    if (drained !== this.adminDrained) {
      this.adminDrained = drained;
      log.warn({ admin_drained: drained }, drained ? 'an admin drained this machine: no new jobs until undrained' : 'an admin undrained this machine');
    }
    for (const w of answer.warnings ?? []) {
      if (this.warned.has(w)) continue;
      this.warned.add(w);
      log.warn({ warning: w }, 'control plane warning');
    }
    if (answer.evict?.length && cache.evictUnused) {
      const { evicted, kept } = cache.evictUnused(answer.evict.map((k) => k.key));
      this.stats.evicted += evicted.length;
      log.info({ evicted, kept }, 'admin eviction applied');
    }
    for (const p of answer.prewarm ?? []) {
      if (p.hint) {
        this.opts.hints?.offer(p);
        continue;
      }
      if (!cache.acquire) break;
      const acquire = cache.acquire.bind(cache);
      this.prewarming = this.prewarming.then(async () => {
        if (this.opts.signal.aborted) return;
        try {
          const r = await acquire([p], this.opts.signal);
          r.release();
          this.stats.prewarmed++;
          log.info({ key: p.key, hit: r.hit.length > 0, bytes: r.bytesDownloaded }, 'pre-warm done');
        } catch (err) {
          this.stats.prewarmFailed++;
          log.warn({ key: p.key, err: (err as Error)?.message }, 'pre-warm failed');
        }
      });
    }
  }

  /** Resolves when queued pre-warms are done (tests, shutdown). */
  idle(): Promise<void> {
    return this.prewarming;
  }
}

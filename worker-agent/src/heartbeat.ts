// The agent's heartbeat: what it says (the body) and when it is sent (the rhythm). The agent (agent.ts) owns the state
// both read; this file only shapes it and keeps the timer.
import type { Heartbeat } from '../../contract/machines.js';
import type { CacheInventory } from './cache/lora-cache.js';
import type { AgentConfig } from './config.js';
import type { Logger } from './logger.js';
import { agentVersion } from './version.js';

export interface HeartbeatState {
  config: Pick<AgentConfig, 'pool' | 'slots'> & Partial<Pick<AgentConfig, 'queueDepth' | 'pinnedLoras'>>;
  inventory: () => CacheInventory;
  /** Sizes and last use of the cached LoRAs (cache-entries.ts); absent: not reported. */
  cacheEntries?: () => NonNullable<Heartbeat['cache_entries']>;
  log: Logger;
  runningJobs: { job_id: string; epoch: number }[];
  draining: boolean;
  receiving: boolean;
  unhealthyReason: string | null;
}

/** The heartbeat body. A cache that cannot answer is reported empty (and logged), never a reason not to beat. */
export function heartbeatBody(s: HeartbeatState): Heartbeat {
  let inv: CacheInventory | undefined;
  try {
    inv = s.inventory();
  } catch (err) {
    s.log.warn({ err: (err as Error).message }, 'cache inventory unavailable');
  }
  const hb: Heartbeat = {
    pool: s.config.pool,
    slots: s.config.slots,
    ...(s.config.queueDepth ? { queue_depth: s.config.queueDepth } : {}),
    running_jobs: s.runningJobs,
    cached_loras: { user: inv?.user ?? [], shared: inv?.shared ?? [] },
    cache: {
      budget_bytes: inv?.budgetBytes ?? 0,
      used_bytes: inv?.usedBytes ?? 0,
      free_disk_bytes: Math.max(0, Math.floor(inv?.freeDiskBytes ?? 0)),
      counters: inv?.counters ?? { hits: 0, misses: 0, downloads: 0, bytes_downloaded: 0, evictions: 0, thrash: 0 },
    },
    draining: s.draining,
    receiving: s.receiving,
    agent_version: agentVersion(),
    unhealthy_reason: s.unhealthyReason,
  };
  if (s.config.pinnedLoras?.length) hb.pinned = s.config.pinnedLoras.slice(0, 1000);
  try {
    if (s.cacheEntries) hb.cache_entries = s.cacheEntries();
  } catch (err) {
    s.log.warn({ err: (err as Error).message }, 'cache entries unavailable');
  }
  if (inv?.downloadBytesPerSecond !== undefined) hb.download_bytes_per_second = Math.max(0, inv.downloadBytesPerSecond);
  return hb;
}

/** What a refused first heartbeat most likely means, for the startup error. */
export function refusedStartHint(status: number, machineId: string): string {
  if (status === 401) return 'the machine token is invalid or was superseded by a newer registration';
  if (status === 403) return 'the token is not a machine token for this machine id';
  if (status === 404) return `machine ${machineId} is not registered (POST /api/machines)`;
  if (status === 409) return 'the POOL setting does not match the registration';
  return 'the API refused the heartbeat';
}

/**
 * When heartbeats go: every `periodMs`, and at once when something the scheduler must know changed (`soon`). One is
 * in flight at a time; a change while one is in flight (it carried the old state) sends another as soon as it is back.
 */
export class HeartbeatRhythm {
  private timer: NodeJS.Timeout | undefined;
  private again = false;
  private ended = false;
  /** The heartbeat being sent, if any. */
  inFlight: Promise<void> | undefined;
  /** Callers of `landed`, resolved when the next beat to start has landed. */
  private waiters: (() => void)[] = [];

  constructor(
    private readonly beat: () => Promise<void>,
    private readonly periodMs: number,
    /** No out-of-band beats (the agent is stopping: its drain sends its own). */
    private readonly stopping: () => boolean,
    /** Nothing more at all (the agent's hard stop). */
    private readonly halted: () => boolean,
  ) {}

  /** The next periodic beat, one period from now. */
  schedule(): void {
    if (this.stopping() && this.halted()) return;
    this.timer = setTimeout(() => this.now(), this.periodMs);
  }

  private now(): void {
    const landing = this.waiters.splice(0);
    this.inFlight = this.beat().finally(() => {
      for (const resolve of landing) resolve();
      this.inFlight = undefined;
      if (this.ended) return;
      if (this.again && !this.stopping()) {
        this.again = false;
        this.now();
      } else {
        this.schedule();
      }
    });
  }

  /** An out-of-band heartbeat, then the periodic rhythm restarts from it. Deferred while one is in flight; not while stopping. */
  soon(): void {
    if (this.stopping() || this.timer === undefined) return;
    if (this.inFlight) {
      this.again = true;
      return;
    }
    clearTimeout(this.timer);
    this.now();
  }

  /**
   * Like `soon`, and resolves once a beat that started after this call has landed (or failed): the state it carried is
   * what the scheduler knows. At once when no out-of-band beat can go (not started, or stopping); callers bound the wait.
   */
  landed(): Promise<void> {
    if (this.stopping() || this.timer === undefined) return Promise.resolve();
    const p = new Promise<void>((resolve) => this.waiters.push(resolve));
    this.soon();
    return p;
  }

  /** Cancels the next periodic beat (the one in flight, if any, still lands: await `inFlight`). */
  pause(): void {
    clearTimeout(this.timer);
  }

  /** For good: no beat is scheduled after the one in flight. */
  end(): void {
    this.ended = true;
    clearTimeout(this.timer);
  }
}

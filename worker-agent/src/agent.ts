// The agent: receives this machine's dispatches and runs at most SLOTS jobs at once, heartbeats, sweeps the cache,
// and drains on shutdown.
//
// Main loop (receive-loop.ts): while not stopping, wait for a free slot, then receive up to (free slots) messages from
// this machine's queue/session and start a JobRun for each (job-run.ts: claim → LoRAs → started → executor → outcome →
// complete).
// With QUEUE_DEPTH > 0 it holds up to SLOTS + QUEUE_DEPTH runs: each claims and downloads at once, and at most SLOTS
// run (run-slots.ts), so the next job's LoRAs arrive while the GPU runs the current one.
// A heartbeat every HEARTBEAT_SECONDS (heartbeat.ts: its body and rhythm) reports the cache inventory (and sizes/last
// use, cache-entries.ts), the runs in progress (job id + epoch), counters, free disk, measured download speed and
// whether the agent is draining; `stop_jobs` in its answer cancels those runs.
// Shutdown (SIGTERM): stop receiving (messages that arrive anyway are abandoned), heartbeat `draining: true` at once,
// let running jobs finish for up to DRAIN_GRACE_SECONDS, then cancel the rest (executor SIGTERM → SIGKILL) and report
// them failed/retryable ("agent shutting down") so the scheduler re-routes them, then a final draining heartbeat.
import type { Heartbeat } from '../../contract/machines.js';
import type { DispatchReceiver, ReceivedDispatch } from '../../dispatch/types.js';
import type { LoraCache } from './cache/lora-cache.js';
import type { ControlPlaneApi } from './api.js';
import type { AgentConfig } from './config.js';
import type { Executor } from './executor/types.js';
import { JobRun, type RunResult } from './job-run.js';
import type { Logger } from './logger.js';
import { MachineHealth } from './health.js';
import { OperatorOrders } from './operator-orders.js';
import { PrewarmHints } from './prewarm-hints.js';
import { ReceiveLoop } from './receive-loop.js';
import { RunSlots } from './run-slots.js';
import { RunsInProgress } from './runs-in-progress.js';
import { QueueWaitLimit } from './queue-wait.js';
import { Outbox } from './outbox.js';
import { TokenWatch } from './token-watch.js';
import { agentVersion } from './version.js';
import { HeartbeatRhythm, heartbeatBody, refusedStartHint } from './heartbeat.js';
import { join } from 'node:path';

/** After the executors were told to stop: time for them to die and for the outcomes to be accepted. */
export const OUTCOME_GRACE_MS = 15_000;

export class AgentStartError extends Error {
  override readonly name = 'AgentStartError';
}

export type AgentCache = Pick<LoraCache, 'acquire' | 'inventory' | 'sweepTtl' | 'close'> & Partial<Pick<LoraCache, 'evictUnused' | 'planRoom' | 'has'>>;

/** Exit code after the control plane refused the machine token for good (deregistered, or re-registered with a token
 * the agent does not have): EX_CONFIG, which the systemd unit does not restart. */
export const EXIT_TOKEN_REFUSED = 78;

export interface AgentDeps {
  config: Pick<
    AgentConfig,
    | 'machineId'
    | 'pool'
    | 'slots'
    | 'stateDir'
    | 'keepRunDirs'
    | 'lockRenewMs'
    | 'heartbeatMs'
    | 'ttlSweepMs'
    | 'drainGraceMs'
    | 'cancelGraceMs'
  > &
    Partial<Pick<AgentConfig, 'pinnedLoras' | 'tokenRefusedGraceMs' | 'cacheDiskReserveBytes' | 'queueDepth' | 'queueWaitLimitSeconds' | 'prewarmHintMinIdleMs'>>;
  /** The token the agent started with, and how to re-read it from its file (absent: not from a file). */
  initialToken?: string;
  reloadToken?: () => string | null;
  api: ControlPlaneApi;
  receiver: DispatchReceiver;
  cache: AgentCache;
  /** Sizes and last use of the cached LoRAs for the heartbeat (cache-entries.ts); absent: not reported. */
  cacheEntries?: () => NonNullable<Heartbeat['cache_entries']>;
  executor: Executor;
  log: Logger;
}

export interface AgentStats {
  received: number;
  runs: RunResult[];
  heartbeats: number;
}

export class Agent {
  private readonly runs = new RunsInProgress();
  /** With QUEUE_DEPTH > 0: the SLOTS the runs (up to SLOTS + QUEUE_DEPTH) take turns on. */
  private readonly runSlots: RunSlots | undefined;
  /** With QUEUE_DEPTH > 0: when a queued run has waited too long and is handed back (queue-wait.ts). */
  private readonly queueWait: QueueWaitLimit | undefined;
  private stopping = false;
  private draining = false;
  private readonly hardStop = new AbortController();
  private readonly outbox: Outbox;
  private readonly receiveLoop: ReceiveLoop;
  private loopDone: Promise<void> | undefined;
  private readonly rhythm: HeartbeatRhythm;
  private sweepTimer: NodeJS.Timeout | undefined;
  private shutdownPromise: Promise<void> | undefined;
  private resolveFinished!: () => void;
  /** Resolves when the agent has shut down completely. */
  readonly finished = new Promise<void>((r) => (this.resolveFinished = r));
  readonly stats: AgentStats = { received: 0, runs: [], heartbeats: 0 };
  /** The process exit code once finished: 0, or EXIT_TOKEN_REFUSED. */
  exitCode = 0;
  readonly health: MachineHealth;
  readonly orders: OperatorOrders;
  /** The scheduler's pre-fetch hints (absent with a cache that cannot plan room, e.g. test doubles). */
  readonly hints: PrewarmHints | undefined;
  private readonly tokens: TokenWatch;

  constructor(private readonly deps: AgentDeps) {
    this.runSlots = (deps.config.queueDepth ?? 0) > 0 ? new RunSlots(deps.config.slots) : undefined;
    this.queueWait = this.runSlots ? new QueueWaitLimit(deps.config.queueWaitLimitSeconds ?? 'auto') : undefined;
    this.outbox = new Outbox(join(deps.config.stateDir, 'outbox'));
    this.receiveLoop = new ReceiveLoop({
      receiver: deps.receiver,
      log: deps.log,
      freeSlots: () => deps.config.slots + (deps.config.queueDepth ?? 0) - this.runs.size,
      isStopping: () => this.stopping,
      setReceiving: (ok) => this.setReceiving(ok),
      stats: this.stats,
      launch: (m) => this.launch(m),
    });
    this.rhythm = new HeartbeatRhythm(() => this.beat(), deps.config.heartbeatMs, () => this.stopping, () => this.hardStop.signal.aborted);
    this.health = new MachineHealth({
      preflight: deps.executor.preflight?.bind(deps.executor),
      freeDiskBytes: () => {
        try {
          return deps.cache.inventory().freeDiskBytes;
        } catch {
          return undefined;
        }
      },
      log: deps.log,
      minFreeDiskBytes: deps.config.cacheDiskReserveBytes,
    });
    this.tokens = new TokenWatch(deps.initialToken ?? null, {
      reload: deps.reloadToken,
      apply: deps.api.setToken?.bind(deps.api),
      graceMs: deps.config.tokenRefusedGraceMs ?? 120_000,
      log: deps.log,
    });
    const { planRoom, has } = deps.cache;
    this.hints =
      planRoom && has
        ? new PrewarmHints({
            cache: { acquire: deps.cache.acquire.bind(deps.cache), planRoom: planRoom.bind(deps.cache), has: has.bind(deps.cache) },
            log: deps.log.child({ component: 'prewarm-hints' }),
            signal: this.hardStop.signal,
            jobDownloading: () => this.runs.anyDownloading(),
            minIdleEvictMs: deps.config.prewarmHintMinIdleMs ?? 30 * 60_000,
          })
        : undefined;
    this.orders = new OperatorOrders({ cache: deps.cache, log: deps.log.child({ component: 'orders' }), signal: this.hardStop.signal, ...(this.hints ? { hints: this.hints } : {}) });
  }

  /** False while the last receive attempt failed (session busy, transport down): reported in the heartbeat. */
  receiving = true;

  get isDraining(): boolean {
    return this.draining;
  }

  /**
   * Sends outcomes left from an earlier process, heartbeats once (a refused token, an unknown machine or a pool
   * mismatch stop startup with AgentStartError), then starts receiving.
   */
  async start(): Promise<void> {
    const { log, config } = this.deps;
    await this.outbox.deliverPending(this.deps.api, this.hardStop.signal, log);
    this.sweepCache();
    const first = await this.deps.api.heartbeat(this.buildHeartbeat(), { retries: 2, maxDelayMs: 2_000 }).catch((err: unknown) => err as Error);
    if (first instanceof Error) {
      log.warn({ err: first.message }, 'first heartbeat failed (API unreachable?); continuing, heartbeats will retry');
    } else if (!first.ok) {
      const hint = refusedStartHint(first.status, config.machineId);
      throw new AgentStartError(`heartbeat refused: HTTP ${first.status} ${first.code}: ${first.message} (${hint})`);
    } else {
      this.stats.heartbeats++;
    }
    this.rhythm.schedule();
    this.sweepTimer = setInterval(() => this.sweepCache(), config.ttlSweepMs);
    this.sweepTimer.unref();
    this.loopDone = this.receiveLoop.run();
    log.info({ slots: config.slots, pool: config.pool, version: agentVersion() }, 'agent ready');
  }

  /** Removes the LoRAs unused past the TTL (at start, then every TTL_SWEEP_MINUTES); a failure is logged, not thrown. */
  private sweepCache(): void {
    try {
      const removed = this.deps.cache.sweepTtl();
      if (removed.length) this.deps.log.info({ removed }, 'cache TTL sweep removed unused LoRAs');
    } catch (err) {
      this.deps.log.warn({ err: (err as Error).message }, 'cache TTL sweep failed');
    }
  }

  // ------------------------------------------------------------------ receiving

  /** Whether the last receive attempt worked. A change is heartbeaten at once: the scheduler must know now. */
  private setReceiving(ok: boolean): void {
    if (this.receiving === ok) return;
    this.receiving = ok;
    this.rhythm.soon();
  }

  private launch(m: ReceivedDispatch): void {
    const { config, api, receiver, cache, executor, log } = this.deps;
    const run = new JobRun(m, {
      api,
      receiver,
      cache,
      executor,
      outbox: this.outbox,
      log,
      stateDir: config.stateDir,
      keepRunDirs: config.keepRunDirs,
      lockRenewMs: config.lockRenewMs,
      hardStop: this.hardStop.signal,
      isStopping: () => this.stopping,
      isRunningElsewhere: (r) => this.runs.isRunningElsewhere(r),
      markUnhealthy: (reason) => {
        this.health.mark(reason);
        this.rhythm.soon();
      },
      ...(this.runSlots ? { runSlots: this.runSlots } : {}),
      ...(this.queueWait ? { queueWait: this.queueWait } : {}),
    });
    this.runs.hold(
      run,
      () => {
        this.hints?.yieldLink(); // a pre-warm hint never holds the link against a job's download
        log.info({ job_id: run.jobId, epoch: run.epoch, delivery: m.deliveryCount, running: this.runs.size }, 'dispatch received');
        return run
          .run()
          .then((result) => {
            this.stats.runs.push(result);
          })
          .catch((err: unknown) => log.error({ err: (err as Error)?.stack }, 'run crashed'));
      },
      () => {
        this.receiveLoop.wake();
        // A freed slot and a fresh inventory (the LoRAs just downloaded) matter to the scheduler now, not at the next
        // periodic beat: otherwise the machine looks busy and cold for up to HEARTBEAT_SECONDS and loses affinity.
        this.rhythm.soon();
      },
    );
  }

  // ------------------------------------------------------------------ heartbeat

  buildHeartbeat(): Heartbeat {
    return heartbeatBody({
      config: this.deps.config,
      inventory: () => this.deps.cache.inventory(),
      ...(this.deps.cacheEntries ? { cacheEntries: this.deps.cacheEntries } : {}),
      log: this.deps.log,
      runningJobs: this.runs.jobs(),
      draining: this.draining,
      receiving: this.receiving,
      unhealthyReason: this.health.recheck(),
    });
  }

  /** One heartbeat; applies `stop_jobs`. Never throws. */
  async beat(opts: { signal?: AbortSignal; retries?: number } = {}): Promise<void> {
    const { log } = this.deps;
    try {
      const hb = this.buildHeartbeat();
      log.debug({ receiving: hb.receiving, draining: hb.draining, running: hb.running_jobs.length }, 'sending heartbeat');
      const answer = await this.deps.api.heartbeat(hb, {
        retries: opts.retries ?? 1,
        maxDelayMs: 1_000,
        signal: opts.signal ?? this.hardStop.signal,
      });
      if (!answer.ok) {
        log.error({ status: answer.status, code: answer.code, err: answer.message }, 'heartbeat refused');
        if (answer.status === 401) this.tokenRejected(answer.message);
        return;
      }
      this.stats.heartbeats++;
      this.tokens.accepted();
      this.orders.apply(answer.value);
      for (const s of answer.value.stop_jobs) this.runs.stop(s, 'the control plane asked to stop this job (cancelled or re-routed)');
    } catch (err) {
      log.warn({ err: (err as Error)?.message }, 'heartbeat failed');
    }
  }

  /** A 401: re-read the token file (token-watch.ts); refused past the grace period, drain and exit 78. */
  private tokenRejected(message: string): void {
    if (this.stopping || this.tokens.refused() !== 'give_up') return;
    this.exitCode = EXIT_TOKEN_REFUSED;
    this.deps.log.fatal(
      { err: message },
      'the control plane refuses this machine token (deregistered, or re-registered with a token not in the token file); stopping. Put the token from the latest registration in the token file and start the agent again',
    );
    void this.shutdown('machine token refused');
  }

  // ------------------------------------------------------------------ shutdown

  /**
   * Drains and stops. A second call while draining skips the rest of the grace period (cancels running jobs now).
   * Resolves when everything is stopped; `finished` resolves at the same time.
   */
  shutdown(reason = 'shutdown requested'): Promise<void> {
    if (this.shutdownPromise) {
      this.runs.cancelAll();
      return this.shutdownPromise;
    }
    this.shutdownPromise = this.drain(reason).finally(() => this.resolveFinished());
    return this.shutdownPromise;
  }

  private async drain(reason: string): Promise<void> {
    const { log, config } = this.deps;
    this.stopping = true;
    this.draining = true;
    log.info({ reason, running: this.runs.jobs().length, drain_grace_s: config.drainGraceMs / 1000 }, 'draining');
    this.receiveLoop.wake();
    this.rhythm.pause();
    clearInterval(this.sweepTimer);
    await this.rhythm.inFlight;
    await this.beat(); // tell the scheduler now: no new work for this machine
    this.rhythm.schedule(); // keep the machine live (and stop_jobs flowing) while jobs finish

    if (!(await this.runs.waitFor(config.drainGraceMs))) {
      log.warn({ running: this.runs.jobs() }, 'drain grace over; stopping the remaining jobs and handing them back');
      this.runs.cancelAll();
      if (!(await this.runs.waitFor(config.cancelGraceMs + OUTCOME_GRACE_MS))) {
        log.error({ running: this.runs.jobs() }, 'runs still not finished; giving up on them (outcomes stay in the outbox)');
        this.hardStop.abort(new Error('agent stopped'));
        await this.runs.waitFor(5_000);
      }
    }
    await this.loopDone?.catch(() => undefined);

    this.rhythm.end();
    await this.rhythm.inFlight;
    await this.beat({ signal: AbortSignal.timeout(10_000), retries: 2 }); // final: draining, nothing running
    this.hardStop.abort(new Error('agent stopped'));
    await this.deps.receiver.close().catch((err: unknown) => log.warn({ err: (err as Error)?.message }, 'closing the receiver failed'));
    await this.deps.cache.close().catch((err: unknown) => log.warn({ err: (err as Error)?.message }, 'closing the cache failed'));
    log.info({ received: this.stats.received, runs: this.stats.runs.length }, 'agent stopped');
  }
}

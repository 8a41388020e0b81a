// The agent's receive loop: while not stopping, wait for a free slot, then receive up to (free slots) messages from
// this machine's queue/session and hand each to the agent (agent.ts starts a JobRun for it). A failed receive backs off
// (a busy session: 1 s → 15 s, a warning each time) and reports "not receiving" until a receive works again; messages
// that arrive once stopping has begun are abandoned, so the scheduler re-routes them.
import { isSessionBusy, type DispatchReceiver, type ReceivedDispatch } from '../../dispatch/types.js';
import type { Logger } from './logger.js';

/** How long one receive call waits for messages (also bounds how long shutdown waits for the receive loop). */
export const RECEIVE_WAIT_MS = 2_000;

/** Longest wait between attempts to accept a session another receiver holds. */
export const SESSION_BUSY_MAX_BACKOFF_MS = 15_000;

export interface ReceiveLoopDeps {
  receiver: DispatchReceiver;
  log: Logger;
  /** How many more dispatches the agent takes now (SLOTS + QUEUE_DEPTH minus the runs it holds). */
  freeSlots: () => number;
  isStopping: () => boolean;
  /** Whether the last receive attempt worked; called after every attempt. */
  setReceiving: (ok: boolean) => void;
  /** Counts every message received, given back or not. */
  stats: { received: number };
  /** Starts a run for a message received while not stopping. */
  launch: (m: ReceivedDispatch) => void;
}

export class ReceiveLoop {
  private wakeUp: (() => void) | undefined;

  constructor(private readonly deps: ReceiveLoopDeps) {}

  /** Ends a wait now: a slot was freed, or stopping began. */
  wake(): void {
    const wake = this.wakeUp;
    this.wakeUp = undefined;
    wake?.();
  }

  /** Receives until stopping; resolves once the loop has ended. */
  async run(): Promise<void> {
    const { receiver, log } = this.deps;
    let failures = 0;
    let busy = 0;
    while (!this.deps.isStopping()) {
      const free = this.deps.freeSlots();
      if (free <= 0) {
        await new Promise<void>((r) => (this.wakeUp = r));
        continue;
      }
      let messages: ReceivedDispatch[];
      try {
        messages = await receiver.receive(free, RECEIVE_WAIT_MS);
        if (busy > 0) log.info({ attempts: busy }, 'dispatch session acquired; receiving again');
        failures = 0;
        busy = 0;
        this.deps.setReceiving(true);
      } catch (err) {
        let delay: number;
        if (isSessionBusy(err)) {
          // Loud and honest: the log says so every time, and the heartbeat says this machine is not receiving, so the
          // scheduler sends it nothing until the session is held again (the broker frees a stale lock within its
          // lockDuration; a second agent with this machine id holds it until it stops).
          busy++;
          delay = Math.min(SESSION_BUSY_MAX_BACKOFF_MS, 1_000 * 2 ** Math.min(busy - 1, 5));
          log.warn({ err: (err as Error).message, attempt: busy, retry_in_ms: delay }, 'session busy: cannot receive dispatches');
        } else {
          failures++;
          delay = Math.min(30_000, 500 * 2 ** Math.min(failures, 6));
          log.warn({ err: (err as Error).message, retry_in_ms: delay }, 'receive failed');
        }
        this.deps.setReceiving(false);
        await new Promise<void>((r) => {
          const t = setTimeout(r, delay);
          this.wakeUp = () => {
            clearTimeout(t);
            r();
          };
        });
        continue;
      }
      for (const m of messages) {
        this.deps.stats.received++;
        if (this.deps.isStopping()) {
          await receiver.abandon(m).catch(() => undefined);
          log.info({ job_id: m.message.job_id, epoch: m.message.epoch }, 'draining: dispatch given back');
          continue;
        }
        this.deps.launch(m);
      }
    }
  }
}

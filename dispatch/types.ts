// The dispatch transport: how the scheduler hands `{job_id, epoch}` to one machine. Two implementations share this
// interface and one contract test suite: Service Bus (a queue with sessions, session id = machine id) in Azure and
// one Storage queue per machine locally.
import type { DispatchMessage } from '../contract/dispatch.js';

/** A dispatch the transport gave up on: delivered too often, malformed, or expired (Service Bus). */
export interface DeadLetter {
  /** `${job_id}:${epoch}` for a well-formed message; the transport's own id otherwise. */
  messageId: string;
  /** null when the body was not a dispatch message. */
  message: DispatchMessage | null;
  machineId: string | null;
  reason: string;
  description: string | null;
  deliveryCount: number;
  deadLetteredAt: string | null;
}

/** Same as Service Bus's maxDeliveryCount on the jobs queue (infra/app/servicebus.bicep). */
export const MAX_DELIVERIES = 10;

export interface DispatchSender {
  readonly kind: 'servicebus' | 'storage-queue';
  /** Idempotent: prepares whatever a machine needs to receive (a Storage queue; nothing for Service Bus). */
  ensureMachine(machineId: string): Promise<void>;
  /** At-least-once delivery to that machine only. messageId = `${job_id}:${epoch}`. */
  send(machineId: string, message: DispatchMessage): Promise<void>;
  /** Cheap reachability probe for /api/health; throws when down. */
  health(): Promise<void>;
  /** Up to `max` dead-lettered dispatches, oldest first, without removing them. */
  deadLetters(max: number): Promise<DeadLetter[]>;
  /** Removes these dead letters (by messageId); returns the ids it found and removed. */
  removeDeadLetters(messageIds: readonly string[]): Promise<string[]>;
  close(): Promise<void>;
}

export interface ReceivedDispatch {
  message: DispatchMessage;
  messageId: string;
  deliveryCount: number;
}

/** The agent's side: it receives only its own machine's messages. */
export interface DispatchReceiver {
  /**
   * Waits up to maxWaitMs for at most `max` messages. Malformed messages, and messages already delivered
   * MAX_DELIVERIES times, are dead-lettered, never returned.
   * Throws SessionBusyError while another receiver holds this machine's channel.
   */
  receive(max: number, maxWaitMs: number): Promise<ReceivedDispatch[]>;
  /** The outcome is recorded: the message is gone for good. */
  complete(m: ReceivedDispatch): Promise<void>;
  /** Give it back for redelivery (e.g. draining before it started). */
  abandon(m: ReceivedDispatch): Promise<void>;
  /** Keeps the message (and session) locked while a long job runs. Throws DispatchLockLostError when the lock is gone
   *  for good; any other error is transient (try again at the next renewal). */
  renew(m: ReceivedDispatch): Promise<void>;
  close(): Promise<void>;
}

/**
 * This machine's dispatch channel is held by another receiver (Service Bus: `SessionCannotBeLocked`/`ServiceTimeout`
 * on accepting the machine's session — a stale agent with the same machine id, or the broker still holding the lock
 * of a connection that dropped, until the queue's lockDuration lapses). Nothing can be received until it is free:
 * the agent backs off, logs it and heartbeats `receiving: false` so the scheduler sends it nothing meanwhile.
 */
export class SessionBusyError extends Error {
  override readonly name = 'SessionBusyError';
  constructor(
    readonly machineId: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/**
 * The lock on a received message is gone for good (Service Bus: the session lock was lost or its receiver closed;
 * Storage: the message became visible again and someone else holds it now). The broker redelivers the message and
 * the claim's epoch fence makes that harmless; renewing it again is pointless. Any other renew failure is transient.
 */
export class DispatchLockLostError extends Error {
  override readonly name = 'DispatchLockLostError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

export const isSessionBusy = (err: unknown): err is SessionBusyError => (err as Error | undefined)?.name === 'SessionBusyError';
export const isDispatchLockLost = (err: unknown): err is DispatchLockLostError => (err as Error | undefined)?.name === 'DispatchLockLostError';

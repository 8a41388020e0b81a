// Azure transport: one Service Bus queue with sessions; session id = machine id, so a machine's agent that accepts its
// own session receives exactly its own dispatches, in order. messageId = `${job_id}:${epoch}` lets the broker's
// duplicate detection drop a re-sent dispatch. The message lock is the session lock: renew() renews the session, and
// the receiver re-accepts the session when the lock was lost or the SDK closed the receiver (session receivers do not
// reconnect); the unsettled messages then come back, and the claim's epoch fencing makes a second delivery harmless.
//
// Failure handling, from @azure/service-bus 7.9.5's own source:
// - acceptSession fails with `SessionCannotBeLocked` (or `ServiceTimeout`) while another receiver holds the session,
//   and the broker keeps a dropped connection's lock until the queue's lockDuration lapses: receive() throws
//   SessionBusyError so the agent backs off, says so in its log and heartbeat, and gets no work meanwhile.
// - settling on a receiver that is gone throws `SessionLockLost` (a ServiceBusError), a plain Error (the receiver was
//   closed by us, or the connection was closed), or an AggregateError (a retried attempt ended in lock loss): all of
//   them mean the lock is gone, the message comes back, and renew() reports DispatchLockLostError.
// - the SDK's default retries add up to ~5.5 minutes per operation: sends are bounded by retry options and an abort
//   signal, so a Service Bus outage costs the scheduler tick seconds, not minutes (the reaper re-routes what was not sent).
import {
  isServiceBusError,
  RetryMode,
  type RetryOptions,
  type ServiceBusClient,
  type ServiceBusReceivedMessage,
  type ServiceBusSender,
  type ServiceBusSessionReceiver,
} from '@azure/service-bus';
import { dispatchMessageId, dispatchMessageSchema, type DispatchMessage } from '../contract/dispatch.js';
import { DispatchLockLostError, SessionBusyError, type DeadLetter, type DispatchReceiver, type DispatchSender, type ReceivedDispatch } from './types.js';

/** One send, all retries included, never takes longer than this (the tick awaits each send). */
export const SEND_TIMEOUT_MS = 10_000;

/**
 * Retry options for the sender's ServiceBusClient (the Functions app): short attempts, few retries. The SDK defaults
 * (4 attempts × 60 s + 3 × 30 s) outlast the function's timeout. The abort signal in send() bounds the rest.
 */
export const SENDER_RETRY_OPTIONS: RetryOptions = { maxRetries: 2, retryDelayInMs: 500, maxRetryDelayInMs: 2_000, mode: RetryMode.Exponential, timeoutInMs: 5_000 };

/** Retry options for the agent's ServiceBusClient: a renewal or settlement that fails should fail within the lock window. */
export const RECEIVER_RETRY_OPTIONS: RetryOptions = { maxRetries: 3, retryDelayInMs: 1_000, maxRetryDelayInMs: 5_000, mode: RetryMode.Exponential, timeoutInMs: 15_000 };

export interface ServiceBusSenderOptions {
  /** Upper bound of one send, retries included (default SEND_TIMEOUT_MS). */
  sendTimeoutMs?: number;
}

export class ServiceBusDispatchSender implements DispatchSender {
  readonly kind = 'servicebus' as const;
  private sender?: ServiceBusSender;
  private readonly sendTimeoutMs: number;

  /** `client` is resolved on first use, so building a sender never connects. */
  constructor(
    private readonly client: () => ServiceBusClient,
    private readonly queue: string,
    options: ServiceBusSenderOptions = {},
  ) {
    this.sendTimeoutMs = positiveFinite(options.sendTimeoutMs ?? SEND_TIMEOUT_MS, 'sendTimeoutMs');
  }

  private get link(): ServiceBusSender {
    this.sender ??= this.client().createSender(this.queue);
    return this.sender;
  }

  async ensureMachine(): Promise<void> {
    // Sessions need no per-machine resource.
  }

  async send(machineId: string, message: DispatchMessage): Promise<void> {
    const body = dispatchMessageSchema.parse(message);
    await this.link.sendMessages(
      { body, contentType: 'application/json', sessionId: machineId, messageId: dispatchMessageId(body), subject: 'dispatch' },
      { abortSignal: AbortSignal.timeout(this.sendTimeoutMs) },
    );
  }

  async health(): Promise<void> {
    // Opens (or reuses) the AMQP link to the queue: fails when the namespace, queue or permission is wrong.
    await this.link.createMessageBatch({ abortSignal: AbortSignal.timeout(this.sendTimeoutMs) });
  }

  // The dead-letter sub-queue (`jobs/$DeadLetterQueue`) has no sessions: the broker moves a message there after
  // maxDeliveryCount deliveries or when its time to live runs out; the receiver puts malformed ones there.
  // Reading it needs Service Bus Data Receiver on the queue (infra/app/rbac.bicep).
  async deadLetters(max: number): Promise<DeadLetter[]> {
    const receiver = this.client().createReceiver(this.queue, { subQueueType: 'deadLetter' });
    try {
      const peeked = await receiver.peekMessages(Math.max(1, max));
      return peeked.map(toDeadLetter);
    } finally {
      await receiver.close();
    }
  }

  async removeDeadLetters(messageIds: readonly string[]): Promise<string[]> {
    const wanted = new Set(messageIds);
    if (wanted.size === 0) return [];
    const receiver = this.client().createReceiver(this.queue, { subQueueType: 'deadLetter', receiveMode: 'peekLock' });
    const removed: string[] = [];
    const others: ServiceBusReceivedMessage[] = [];
    try {
      for (let round = 0; round < 100 && removed.length < wanted.size; round++) {
        const batch = await receiver.receiveMessages(50, { maxWaitTimeInMs: 2000 });
        if (batch.length === 0) break;
        for (const m of batch) {
          const id = toDeadLetter(m).messageId;
          if (wanted.has(id) && !removed.includes(id)) {
            await receiver.completeMessage(m);
            removed.push(id);
          } else others.push(m);
        }
      }
      for (const m of others) await receiver.abandonMessage(m).catch(() => undefined);
    } finally {
      await receiver.close();
    }
    return removed;
  }

  async close(): Promise<void> {
    await this.sender?.close();
    this.sender = undefined;
  }
}

function toDeadLetter(m: ServiceBusReceivedMessage): DeadLetter {
  const parsed = dispatchMessageSchema.safeParse(m.body);
  return {
    messageId: parsed.success ? dispatchMessageId(parsed.data) : String(m.messageId ?? m.sequenceNumber ?? 'unknown'),
    message: parsed.success ? parsed.data : null,
    machineId: m.sessionId ?? null,
    reason: m.deadLetterReason ?? 'Unknown',
    description: m.deadLetterErrorDescription ?? null,
    deliveryCount: m.deliveryCount ?? 0,
    deadLetteredAt: null, // Service Bus keeps the original enqueue time only
  };
}

interface SbHandle extends ReceivedDispatch {
  raw: ServiceBusReceivedMessage;
  session: ServiceBusSessionReceiver;
}

/** Codes as the SDK sets them: ServiceBusError codes, and core-amqp's MessagingError codes inside retried errors. */
const LOCK_LOST_CODES = new Set(['SessionLockLost', 'MessageLockLost', 'SessionLockLostError', 'MessageLockLostError']);
const SESSION_BUSY_CODES = new Set(['SessionCannotBeLocked', 'ServiceTimeout']);
/** The SDK's plain Errors for a receiver we closed, and for a closed client (util/errors.js). */
const GONE_MESSAGE = /has been closed and can no longer be used|underlying AMQP connection is closed/;

const errorCode = (err: unknown): string | undefined => (isServiceBusError(err) ? err.code : ((err as { code?: unknown } | null)?.code as string | undefined));

/** Whether a settlement/renewal error means the message's lock is gone for good. */
export function isLockLostError(err: unknown): boolean {
  if (err instanceof AggregateError) return err.errors.some(isLockLostError);
  if (LOCK_LOST_CODES.has(errorCode(err) ?? '')) return true;
  return err instanceof Error && GONE_MESSAGE.test(err.message);
}

const isAbortError = (err: unknown): boolean => (err as Error | undefined)?.name === 'AbortError';

export interface ServiceBusReceiverOptions {
  /** Close the client with the receiver (true when the receiver created it). */
  ownsClient?: boolean;
  /**
   * How long the SDK keeps renewing the session lock by itself (default 1 h; then renew() keeps a running job's lock,
   * and an idle receiver re-accepts the session when the lock lapsed). Must be finite: the SDK computes
   * `new Date(now + autoRenewMs)`, and `new Date(Infinity)` is an invalid date that silently disables renewal.
   */
  autoRenewMs?: number;
  /** Upper bound of one acceptSession attempt (default 30 s); close() aborts it at once. */
  acceptTimeoutMs?: number;
  /** Upper bound of one renewal, retries included (default 15 s). */
  renewTimeoutMs?: number;
  /** Where problems that do not fail the call go (e.g. a malformed message that could not be dead-lettered). */
  warn?: (fields: Record<string, unknown>, msg: string) => void;
}

export const DEFAULT_AUTO_RENEW_MS = 3600_000;

export class ServiceBusDispatchReceiver implements DispatchReceiver {
  private session?: ServiceBusSessionReceiver;
  private closed = false;
  private readonly closing = new AbortController();
  private readonly autoRenewMs: number;
  private readonly acceptTimeoutMs: number;
  private readonly renewTimeoutMs: number;

  constructor(
    private readonly client: ServiceBusClient,
    private readonly queue: string,
    readonly machineId: string,
    private readonly options: ServiceBusReceiverOptions = {},
  ) {
    const renew = options.autoRenewMs ?? DEFAULT_AUTO_RENEW_MS;
    if (!Number.isFinite(renew) || renew < 0) throw new RangeError(`autoRenewMs must be a finite number of ms ≥ 0 (got ${renew})`);
    this.autoRenewMs = renew;
    this.acceptTimeoutMs = positiveFinite(options.acceptTimeoutMs ?? 30_000, 'acceptTimeoutMs');
    this.renewTimeoutMs = positiveFinite(options.renewTimeoutMs ?? 15_000, 'renewTimeoutMs');
  }

  /** The session receiver for this machine's session, accepted again if the previous lock was lost or closed. */
  private async acquire(): Promise<ServiceBusSessionReceiver> {
    const held = this.session;
    if (held && !held.isClosed && held.sessionLockedUntilUtc.getTime() > Date.now()) return held;
    await this.dropSession();
    try {
      this.session = await this.client.acceptSession(this.queue, this.machineId, {
        receiveMode: 'peekLock',
        maxAutoLockRenewalDurationInMs: this.autoRenewMs,
        abortSignal: AbortSignal.any([this.closing.signal, AbortSignal.timeout(this.acceptTimeoutMs)]),
      });
      return this.session;
    } catch (err) {
      if (this.closed) throw new Error('receiver is closed', { cause: err });
      const code = errorCode(err);
      if (SESSION_BUSY_CODES.has(code ?? '') || isAbortError(err)) {
        throw new SessionBusyError(
          this.machineId,
          `session ${this.machineId} on ${this.queue} is held by another receiver (${code ?? `no answer within ${this.acceptTimeoutMs} ms`}): ` +
            'a second agent with this machine id, or a lock kept by the broker after a dropped connection until the lockDuration lapses',
          { cause: err },
        );
      }
      throw err;
    }
  }

  /** Forgets the session receiver and closes it, also when the SDK closed it by itself (that frees its resources). */
  private async dropSession(): Promise<void> {
    const s = this.session;
    this.session = undefined;
    if (s) await s.close().catch(() => undefined);
  }

  async receive(max: number, maxWaitMs: number): Promise<ReceivedDispatch[]> {
    if (this.closed) throw new Error('receiver is closed');
    const deadline = Date.now() + maxWaitMs;
    const session = await this.acquire();
    let messages: ServiceBusReceivedMessage[];
    try {
      messages = await session.receiveMessages(Math.max(1, max), { maxWaitTimeInMs: Math.max(1, deadline - Date.now()), abortSignal: this.closing.signal });
    } catch (err) {
      if (this.closed) return [];
      if (isLockLostError(err) || session.isClosed) {
        await this.dropSession();
        return [];
      }
      throw err;
    }
    const out: ReceivedDispatch[] = [];
    for (const raw of messages) {
      const parsed = dispatchMessageSchema.safeParse(decodeBody(raw.body));
      if (!parsed.success) {
        // Poison: parked in the dead-letter queue for inspection, never returned, never retried. One that cannot be
        // dead-lettered now stays locked and comes back later; the rest of the batch is handed out regardless.
        try {
          await session.deadLetterMessage(raw, { deadLetterReason: 'MalformedDispatch', deadLetterErrorDescription: 'body is not {job_id, epoch}' });
        } catch (err) {
          this.options.warn?.({ err: (err as Error)?.message, message_id: raw.messageId }, 'could not dead-letter a malformed dispatch message; it will come back');
        }
        continue;
      }
      const handle: SbHandle = {
        message: parsed.data,
        messageId: typeof raw.messageId === 'string' ? raw.messageId : dispatchMessageId(parsed.data),
        // AMQP counts earlier deliveries (0 the first time); the contract counts deliveries (1 the first time).
        deliveryCount: (raw.deliveryCount ?? 0) + 1,
        raw,
        session,
      };
      out.push(handle);
    }
    return out;
  }

  /**
   * Runs a settlement or renewal on the session the message came from. Lock loss in any of its shapes (see
   * isLockLostError, or that receiver being closed) drops that session; complete/abandon then succeed quietly (the
   * message comes back and its claim answers 409), renew throws DispatchLockLostError. Other errors are transient.
   */
  private async onSession(m: ReceivedDispatch, op: (s: ServiceBusSessionReceiver, raw: ServiceBusReceivedMessage) => Promise<unknown>, what: 'settle' | 'renew'): Promise<void> {
    const h = m as SbHandle;
    try {
      await op(h.session, h.raw);
    } catch (err) {
      if (!isLockLostError(err) && !h.session.isClosed) throw err;
      if (h.session === this.session) await this.dropSession();
      if (what === 'renew') throw new DispatchLockLostError(`the session lock of ${this.machineId} is gone: ${(err as Error)?.message ?? String(err)}`, { cause: err });
    }
  }

  complete(m: ReceivedDispatch): Promise<void> {
    return this.onSession(m, (s, raw) => s.completeMessage(raw), 'settle');
  }

  abandon(m: ReceivedDispatch): Promise<void> {
    return this.onSession(m, (s, raw) => s.abandonMessage(raw), 'settle');
  }

  /** Session messages are locked by the session: renewing the session lock keeps this message (and the session). */
  renew(m: ReceivedDispatch): Promise<void> {
    return this.onSession(m, (s) => s.renewSessionLock({ abortSignal: AbortSignal.any([this.closing.signal, AbortSignal.timeout(this.renewTimeoutMs)]) }), 'renew');
  }

  async close(): Promise<void> {
    this.closed = true;
    this.closing.abort(new Error('receiver closed'));
    await this.dropSession();
    if (this.options.ownsClient) await this.client.close();
  }
}

function positiveFinite(ms: number, name: string): number {
  if (!Number.isFinite(ms) || ms <= 0) throw new RangeError(`${name} must be a finite number of ms > 0 (got ${ms})`);
  return ms;
}

function decodeBody(body: unknown): unknown {
  if (typeof body === 'string') {
    try {
      return JSON.parse(body);
    } catch {
      return body;
    }
  }
  if (body instanceof Uint8Array) {
    try {
      return JSON.parse(Buffer.from(body).toString('utf8'));
    } catch {
      return null;
    }
  }
  return body;
}

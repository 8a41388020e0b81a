// Azure transport: one Service Bus queue with sessions; session id = machine id, so a machine's agent that accepts its
// own session receives exactly its own dispatches, in order. messageId = `${job_id}:${epoch}` lets the broker's
// duplicate detection drop a re-sent dispatch. The message lock is the session lock: renew() renews the session, and
// the receiver re-accepts the session when the lock was lost (the unsettled messages then come back, and the claim's
// epoch fencing makes a second delivery harmless).
import {
  isServiceBusError,
  type ServiceBusClient,
  type ServiceBusReceivedMessage,
  type ServiceBusSender,
  type ServiceBusSessionReceiver,
} from '@azure/service-bus';
import { dispatchMessageId, dispatchMessageSchema, type DispatchMessage } from '../contract/dispatch.js';
import type { DeadLetter, DispatchReceiver, DispatchSender, ReceivedDispatch } from './types.js';

export class ServiceBusDispatchSender implements DispatchSender {
  readonly kind = 'servicebus' as const;
  private sender?: ServiceBusSender;

  /** `client` is resolved on first use, so building a sender never connects. */
  constructor(
    private readonly client: () => ServiceBusClient,
    private readonly queue: string,
  ) {}

  private get link(): ServiceBusSender {
    this.sender ??= this.client().createSender(this.queue);
    return this.sender;
  }

  async ensureMachine(): Promise<void> {
    // Sessions need no per-machine resource.
  }

  async send(machineId: string, message: DispatchMessage): Promise<void> {
    const body = dispatchMessageSchema.parse(message);
    await this.link.sendMessages({
      body,
      contentType: 'application/json',
      sessionId: machineId,
      messageId: dispatchMessageId(body),
      subject: 'dispatch',
    });
  }

  async health(): Promise<void> {
    // Opens (or reuses) the AMQP link to the queue: fails when the namespace, queue or permission is wrong.
    await this.link.createMessageBatch();
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

const errorCode = (err: unknown): string | undefined => (isServiceBusError(err) ? err.code : undefined);
const LOCK_LOST = new Set(['SessionLockLost', 'MessageLockLost']);

export interface ServiceBusReceiverOptions {
  /** Close the client with the receiver (true when the receiver created it). */
  ownsClient?: boolean;
  /** How long the SDK keeps renewing the session lock by itself. Default: 1 h (then re-accepted if lost). */
  autoRenewMs?: number;
}

export class ServiceBusDispatchReceiver implements DispatchReceiver {
  private session?: ServiceBusSessionReceiver;
  private closed = false;

  constructor(
    private readonly client: ServiceBusClient,
    private readonly queue: string,
    readonly machineId: string,
    private readonly options: ServiceBusReceiverOptions = {},
  ) {}

  /** The session receiver for this machine's session, accepted again if the previous lock was lost or closed. */
  private async acquire(): Promise<ServiceBusSessionReceiver | null> {
    if (this.session && !this.session.isClosed && this.session.sessionLockedUntilUtc.getTime() > Date.now()) return this.session;
    await this.dropSession();
    try {
      this.session = await this.client.acceptSession(this.queue, this.machineId, {
        receiveMode: 'peekLock',
        maxAutoLockRenewalDurationInMs: this.options.autoRenewMs ?? 3600_000,
      });
      return this.session;
    } catch (err) {
      // Another receiver (e.g. this agent's previous process) still holds the session: nothing for us until it lapses.
      if (errorCode(err) === 'SessionCannotBeLocked' || errorCode(err) === 'ServiceTimeout') return null;
      throw err;
    }
  }

  private async dropSession(): Promise<void> {
    const s = this.session;
    this.session = undefined;
    if (s && !s.isClosed) await s.close().catch(() => undefined);
  }

  async receive(max: number, maxWaitMs: number): Promise<ReceivedDispatch[]> {
    if (this.closed) throw new Error('receiver is closed');
    const deadline = Date.now() + maxWaitMs;
    const session = await this.acquire();
    if (!session) {
      await new Promise((r) => setTimeout(r, Math.max(0, Math.min(1000, deadline - Date.now()))));
      return [];
    }
    let messages: ServiceBusReceivedMessage[];
    try {
      messages = await session.receiveMessages(Math.max(1, max), { maxWaitTimeInMs: Math.max(1, deadline - Date.now()) });
    } catch (err) {
      if (LOCK_LOST.has(errorCode(err) ?? '')) {
        await this.dropSession();
        return [];
      }
      throw err;
    }
    const out: ReceivedDispatch[] = [];
    for (const raw of messages) {
      const parsed = dispatchMessageSchema.safeParse(decodeBody(raw.body));
      if (!parsed.success) {
        // Poison: parked in the dead-letter queue for inspection, never returned, never retried.
        await session.deadLetterMessage(raw, { deadLetterReason: 'MalformedDispatch', deadLetterErrorDescription: 'body is not {job_id, epoch}' });
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

  private async settle(m: ReceivedDispatch, op: (s: ServiceBusSessionReceiver, raw: ServiceBusReceivedMessage) => Promise<unknown>, swallowLockLost: boolean): Promise<void> {
    const h = m as SbHandle;
    try {
      await op(h.session, h.raw);
    } catch (err) {
      if (!LOCK_LOST.has(errorCode(err) ?? '')) throw err;
      if (h.session === this.session) await this.dropSession();
      // The lock is gone, so the broker redelivers the message; the claim's epoch check makes that harmless.
      if (!swallowLockLost) throw err;
    }
  }

  complete(m: ReceivedDispatch): Promise<void> {
    return this.settle(m, (s, raw) => s.completeMessage(raw), true);
  }

  abandon(m: ReceivedDispatch): Promise<void> {
    return this.settle(m, (s, raw) => s.abandonMessage(raw), true);
  }

  /** Session messages are locked by the session: renewing the session lock keeps this message (and the session). */
  renew(m: ReceivedDispatch): Promise<void> {
    return this.settle(m, (s) => s.renewSessionLock(), false);
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.dropSession();
    if (this.options.ownsClient) await this.client.close();
  }
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

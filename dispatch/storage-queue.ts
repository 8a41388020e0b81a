// Local transport: one Azure Storage queue per machine (`<prefix><machineId>`), Azurite in development.
// Visibility timeout plays the role of Service Bus's message lock. Storage queues have no dead-letter queue, so this
// transport keeps one like Service Bus does: a message that is malformed or comes back a MAX_DELIVERIES + 1st time
// moves to `dl-<prefix>` (one per prefix, its name outside the machine queues' `<prefix>...` namespace).
import { existsSync } from 'node:fs';
import type { QueueClient, QueueServiceClient } from '@azure/storage-queue';
import { dispatchMessageId, dispatchMessageSchema, type DispatchMessage } from '../contract/dispatch.js';
import { DispatchLockLostError, MAX_DELIVERIES, SessionBusyError, type DeadLetter, type DispatchReceiver, type DispatchSender, type ReceivedDispatch } from './types.js';

export const queueNameFor = (prefix: string, machineId: string): string => `${prefix}${machineId}`;
export const deadLetterQueueNameFor = (prefix: string): string => `dl-${prefix.replace(/-+$/, '')}`;

/** What the dead-letter queue holds: the original body plus why and where it died. */
interface DeadLetterEnvelope {
  body: string;
  machine_id: string;
  reason: 'MaxDeliveryCountExceeded' | 'MalformedDispatch';
  description: string;
  delivery_count: number;
  dead_lettered_at: string;
}
const encode = (text: string) => Buffer.from(text).toString('base64');
const decode = (text: string) => Buffer.from(text, 'base64').toString('utf8');

function parseDispatch(body: string): DispatchMessage | null {
  try {
    return dispatchMessageSchema.parse(stripId(JSON.parse(body)));
  } catch {
    return null;
  }
}

export class StorageQueueSender implements DispatchSender {
  readonly kind = 'storage-queue' as const;
  private readonly ensured = new Set<string>();
  constructor(
    private readonly service: QueueServiceClient,
    private readonly prefix: string,
  ) {}

  private queue(machineId: string): QueueClient {
    return this.service.getQueueClient(queueNameFor(this.prefix, machineId));
  }

  async ensureMachine(machineId: string): Promise<void> {
    if (this.ensured.has(machineId)) return;
    await this.queue(machineId).createIfNotExists();
    this.ensured.add(machineId);
  }

  async send(machineId: string, message: DispatchMessage): Promise<void> {
    await this.ensureMachine(machineId);
    const body = JSON.stringify({ ...dispatchMessageSchema.parse(message), message_id: dispatchMessageId(message) });
    await this.queue(machineId).sendMessage(Buffer.from(body).toString('base64'));
  }

  async health(): Promise<void> {
    await this.service.getProperties();
  }

  private get deadLetterQueue(): QueueClient {
    return this.service.getQueueClient(deadLetterQueueNameFor(this.prefix));
  }

  async deadLetters(max: number): Promise<DeadLetter[]> {
    const q = this.deadLetterQueue;
    if (!(await q.exists())) return [];
    // Peek shows at most 32 messages (a Storage limit); enough for an operator's view, and recovery drains the rest.
    const res = await q.peekMessages({ numberOfMessages: Math.min(32, Math.max(1, max)) });
    return res.peekedMessageItems.map((m) => toDeadLetter(m.messageId, m.messageText));
  }

  async removeDeadLetters(messageIds: readonly string[]): Promise<string[]> {
    const wanted = new Set(messageIds);
    const q = this.deadLetterQueue;
    if (wanted.size === 0 || !(await q.exists())) return [];
    const removed: string[] = [];
    const others: { messageId: string; popReceipt: string }[] = [];
    // Receive (hidden for 30 s) until the queue is drained or everything wanted was found; the rest is put back.
    for (let round = 0; round < 100 && removed.length < wanted.size; round++) {
      const res = await q.receiveMessages({ numberOfMessages: 32, visibilityTimeout: 30 });
      if (res.receivedMessageItems.length === 0) break;
      for (const m of res.receivedMessageItems) {
        const id = toDeadLetter(m.messageId, m.messageText).messageId;
        if (wanted.has(id) && !removed.includes(id)) {
          await q.deleteMessage(m.messageId, m.popReceipt);
          removed.push(id);
        } else others.push({ messageId: m.messageId, popReceipt: m.popReceipt });
      }
    }
    for (const o of others) await q.updateMessage(o.messageId, o.popReceipt, undefined, 0).catch(() => undefined);
    return removed;
  }

  async close(): Promise<void> {}
}

function toDeadLetter(storageMessageId: string, text: string): DeadLetter {
  let env: Partial<DeadLetterEnvelope> = {};
  try {
    env = JSON.parse(decode(text)) as DeadLetterEnvelope;
  } catch {
    /* not ours: shown as malformed */
  }
  const message = typeof env.body === 'string' ? parseDispatch(env.body) : null;
  return {
    messageId: message ? dispatchMessageId(message) : storageMessageId,
    message,
    machineId: env.machine_id ?? null,
    reason: env.reason ?? 'Unknown',
    description: env.description ?? null,
    deliveryCount: env.delivery_count ?? 0,
    deadLetteredAt: env.dead_lettered_at ?? null,
  };
}

interface QueueHandle extends ReceivedDispatch {
  popReceipt: string;
  storageMessageId: string;
}

/**
 * The message is no longer ours: 404 MessageNotFound (deleted), or 400 PopReceiptMismatch (it became visible and was
 * received again, so our pop receipt is stale), as Azure Storage and Azurite answer.
 */
const notOurs = (err: unknown): boolean => {
  const e = err as { statusCode?: number; code?: string };
  return e.statusCode === 404 || e.code === 'PopReceiptMismatch';
};

export interface StorageQueueReceiverOptions {
  /**
   * Local development and tests only: while this file exists, receive() throws SessionBusyError, as the Service Bus
   * receiver does while another receiver holds the machine's session. Storage queues have no exclusive receiver, so
   * this is how the local stack shows what the agent and the scheduler do when a machine cannot receive.
   */
  simulateSessionBusyFile?: string;
}

export class StorageQueueReceiver implements DispatchReceiver {
  private readonly queue: QueueClient;
  private readonly deadLetterQueue: QueueClient;
  private ready = false;
  constructor(
    service: QueueServiceClient,
    prefix: string,
    readonly machineId: string,
    /** How long a received message stays invisible before redelivery unless renewed. */
    private readonly lockSeconds = 60,
    private readonly maxDeliveries = MAX_DELIVERIES,
    private readonly options: StorageQueueReceiverOptions = {},
  ) {
    this.queue = service.getQueueClient(queueNameFor(prefix, machineId));
    this.deadLetterQueue = service.getQueueClient(deadLetterQueueNameFor(prefix));
  }

  /** Moves a received message to the dead-letter queue (copy first, then delete: a crash in between repeats it). */
  private async deadLetter(m: { messageId: string; popReceipt: string; dequeueCount: number }, body: string, reason: DeadLetterEnvelope['reason'], description: string): Promise<void> {
    await this.deadLetterQueue.createIfNotExists();
    const envelope: DeadLetterEnvelope = { body, machine_id: this.machineId, reason, description, delivery_count: m.dequeueCount, dead_lettered_at: new Date().toISOString() };
    // TTL -1: kept until an operator recovers or removes it (GET/POST /api/dead-letters).
    await this.deadLetterQueue.sendMessage(encode(JSON.stringify(envelope)), { messageTimeToLive: -1 });
    await this.queue.deleteMessage(m.messageId, m.popReceipt);
  }

  async receive(max: number, maxWaitMs: number): Promise<ReceivedDispatch[]> {
    const busyFile = this.options.simulateSessionBusyFile;
    if (busyFile && existsSync(busyFile)) {
      throw new SessionBusyError(this.machineId, `session ${this.machineId} is held by another receiver (simulated: ${busyFile} exists)`);
    }
    if (!this.ready) {
      await this.queue.createIfNotExists();
      this.ready = true;
    }
    const deadline = Date.now() + maxWaitMs;
    for (;;) {
      const res = await this.queue.receiveMessages({ numberOfMessages: Math.min(32, Math.max(1, max)), visibilityTimeout: this.lockSeconds });
      const out: ReceivedDispatch[] = [];
      for (const m of res.receivedMessageItems) {
        const body = decode(m.messageText);
        const message = parseDispatch(body);
        if (!message) {
          await this.deadLetter(m, body, 'MalformedDispatch', 'body is not {job_id, epoch}'); // never retried, never run
          continue;
        }
        if (m.dequeueCount > this.maxDeliveries) {
          await this.deadLetter(m, body, 'MaxDeliveryCountExceeded', `delivered ${this.maxDeliveries} times without being completed`);
          continue;
        }
        const handle: QueueHandle = {
          message,
          messageId: dispatchMessageId(message),
          deliveryCount: m.dequeueCount,
          popReceipt: m.popReceipt,
          storageMessageId: m.messageId,
        };
        out.push(handle);
      }
      if (out.length > 0 || Date.now() >= deadline) return out;
      await new Promise((r) => setTimeout(r, Math.min(250, Math.max(0, deadline - Date.now()))));
    }
  }

  async complete(m: ReceivedDispatch): Promise<void> {
    const h = m as QueueHandle;
    try {
      await this.queue.deleteMessage(h.storageMessageId, h.popReceipt);
    } catch (err) {
      if (!notOurs(err)) throw err; // already gone, or received again by someone else: fine
    }
  }

  async abandon(m: ReceivedDispatch): Promise<void> {
    const h = m as QueueHandle;
    try {
      const r = await this.queue.updateMessage(h.storageMessageId, h.popReceipt, undefined, 0);
      if (r.popReceipt) h.popReceipt = r.popReceipt;
    } catch (err) {
      // Received again by someone else, or gone: no longer ours to give back, as with a lost Service Bus lock.
      if (!notOurs(err)) throw err;
    }
  }

  async renew(m: ReceivedDispatch): Promise<void> {
    const h = m as QueueHandle;
    try {
      const r = await this.queue.updateMessage(h.storageMessageId, h.popReceipt, undefined, this.lockSeconds);
      if (r.popReceipt) h.popReceipt = r.popReceipt;
    } catch (err) {
      if (notOurs(err)) throw new DispatchLockLostError(`the dispatch message ${h.messageId} is no longer held (its pop receipt is stale)`, { cause: err });
      throw err;
    }
  }

  async close(): Promise<void> {}
}

function stripId(value: unknown): unknown {
  if (value && typeof value === 'object' && 'message_id' in value) {
    const { message_id: _id, ...rest } = value as Record<string, unknown>;
    return rest;
  }
  return value;
}

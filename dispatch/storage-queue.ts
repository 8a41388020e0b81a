// Local transport: one Azure Storage queue per machine (`<prefix><machineId>`), Azurite in development.
// Visibility timeout plays the role of Service Bus's message lock.
import { existsSync } from 'node:fs';
import type { QueueClient, QueueServiceClient } from '@azure/storage-queue';
import { dispatchMessageId, dispatchMessageSchema, type DispatchMessage } from '../contract/dispatch.js';
import { DispatchLockLostError, SessionBusyError, type DispatchReceiver, type DispatchSender, type ReceivedDispatch } from './types.js';

export const queueNameFor = (prefix: string, machineId: string): string => `${prefix}${machineId}`;

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

  async close(): Promise<void> {}
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
  private ready = false;
  constructor(
    service: QueueServiceClient,
    prefix: string,
    readonly machineId: string,
    /** How long a received message stays invisible before redelivery unless renewed. */
    private readonly lockSeconds = 60,
    private readonly options: StorageQueueReceiverOptions = {},
  ) {
    this.queue = service.getQueueClient(queueNameFor(prefix, machineId));
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
        let message: DispatchMessage;
        try {
          message = dispatchMessageSchema.parse(stripId(JSON.parse(Buffer.from(m.messageText, 'base64').toString('utf8'))));
        } catch {
          await this.queue.deleteMessage(m.messageId, m.popReceipt); // poison: never retried, never run
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

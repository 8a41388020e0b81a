// One contract for every dispatch transport: storage-queue on Azurite (always) and Service Bus when
// SERVICEBUS_CONNECTION_STRING names a namespace with a session-enabled queue (SERVICEBUS_QUEUE, default `jobs`).
import { randomBytes } from 'node:crypto';
import { ServiceBusClient } from '@azure/service-bus';
import { QueueServiceClient } from '@azure/storage-queue';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { newJobId } from '../contract/ids.js';
import { dispatchMessageId } from '../contract/dispatch.js';
import { createDispatchReceiver } from './index.js';
import { ServiceBusDispatchSender } from './servicebus.js';
import { deadLetterQueueNameFor, queueNameFor, StorageQueueSender } from './storage-queue.js';
import { MAX_DELIVERIES, type DispatchReceiver, type DispatchSender, type ReceivedDispatch } from './types.js';

interface Harness {
  sender: DispatchSender;
  receiver(machineId: string): DispatchReceiver;
  /** Puts a body that is not a dispatch message on the machine's channel. */
  sendRaw(machineId: string, body: string): Promise<void>;
  close(): Promise<void>;
}

interface Timing {
  /** How long a received, unrenewed message stays locked. */
  lockMs: number;
  /** After a receiver closed: how long until a message it held but did not settle would be back. */
  releaseMs: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const machine = (tag: string) => `m-${tag}-${randomBytes(4).toString('hex')}`;

/** Receives until `n` messages arrived or `waitMs` passed. */
async function receiveN(r: DispatchReceiver, n: number, waitMs: number): Promise<ReceivedDispatch[]> {
  const out: ReceivedDispatch[] = [];
  const deadline = Date.now() + waitMs;
  while (out.length < n && Date.now() < deadline) out.push(...(await r.receive(n - out.length, Math.max(1, Math.min(1000, deadline - Date.now())))));
  return out;
}

function transportContract(name: string, timing: Timing, make: () => Promise<Harness>) {
  const slow = { timeout: 30_000 + 2 * (timing.lockMs + timing.releaseMs) };
  describe(name, () => {
    let h: Harness;
    const receivers: DispatchReceiver[] = [];
    const open = (machineId: string) => {
      const r = h.receiver(machineId);
      receivers.push(r);
      return r;
    };
    const setup = async () => {
      h ??= await make();
      return h;
    };
    afterAll(async () => {
      for (const r of receivers) await r.close().catch(() => undefined);
      await h?.close();
    });

    it('delivers a message to that machine only; another machine never sees it', async () => {
      await setup();
      const a = machine('a');
      const b = machine('b');
      await h.sender.ensureMachine(a);
      await h.sender.ensureMachine(b);
      const job_id = newJobId();
      await h.sender.send(a, { job_id, epoch: 1 });
      const other = open(b);
      expect(await other.receive(10, 1500)).toEqual([]);
      const mine = open(a);
      const got = await receiveN(mine, 1, 5000);
      expect(got.map((m) => m.message)).toEqual([{ job_id, epoch: 1 }]);
      await mine.complete(got[0]!);
      expect(await other.receive(10, 500)).toEqual([]);
    });

    it('uses messageId = job_id:epoch and counts the first delivery as 1', async () => {
      await setup();
      const a = machine('id');
      const job_id = newJobId();
      await h.sender.send(a, { job_id, epoch: 7 });
      const r = open(a);
      const [m] = await receiveN(r, 1, 5000);
      expect(m!.messageId).toBe(`${job_id}:7`);
      expect(m!.messageId).toBe(dispatchMessageId({ job_id, epoch: 7 }));
      expect(m!.deliveryCount).toBe(1);
      await r.complete(m!);
    });

    it('complete removes it for good', slow, async () => {
      await setup();
      const a = machine('c');
      await h.sender.send(a, { job_id: newJobId(), epoch: 1 });
      const r = open(a);
      const [m] = await receiveN(r, 1, 5000);
      await r.complete(m!);
      await r.close();
      // Past the lock window: an uncompleted message would be back by now.
      await sleep(timing.releaseMs);
      const again = open(a);
      expect(await again.receive(10, 1000)).toEqual([]);
    });

    it('abandon gives it back at once, with deliveryCount + 1', async () => {
      await setup();
      const a = machine('ab');
      const job_id = newJobId();
      await h.sender.send(a, { job_id, epoch: 2 });
      const r = open(a);
      const [first] = await receiveN(r, 1, 5000);
      await r.abandon(first!);
      const [second] = await receiveN(r, 1, 5000);
      expect(second!.message).toEqual({ job_id, epoch: 2 });
      expect(second!.deliveryCount).toBe(first!.deliveryCount + 1);
      await r.complete(second!);
    });

    it('renew keeps it invisible past the lock window', slow, async () => {
      await setup();
      const a = machine('rn');
      const job_id = newJobId();
      await h.sender.send(a, { job_id, epoch: 3 });
      const holder = open(a);
      const [m] = await receiveN(holder, 1, 5000);
      // Renew at half the window, three times: 1.5 windows in total, well past the original lock.
      for (let i = 0; i < 3; i++) {
        await sleep(timing.lockMs / 2);
        await holder.renew(m!);
      }
      const rival = open(a);
      expect(await rival.receive(10, 500)).toEqual([]);
      await rival.close();
      await holder.complete(m!);
    });

    it('dead-letters a message given back MAX_DELIVERIES times; the sender lists it and removes it', slow, async () => {
      await setup();
      const a = machine('dlq');
      const job_id = newJobId();
      await h.sender.send(a, { job_id, epoch: 2 });
      const r = open(a);
      for (let i = 1; i <= MAX_DELIVERIES; i++) {
        const [m] = await receiveN(r, 1, 4000);
        expect(m?.deliveryCount).toBe(i);
        await r.abandon(m!);
      }
      expect(await r.receive(1, 1500)).toEqual([]);
      await r.close();
      const id = `${job_id}:2`;
      const mine = async () => (await h.sender.deadLetters(100)).filter((d) => d.messageId === id);
      let found = await mine();
      for (let i = 0; i < 20 && found.length === 0; i++) found = (await sleep(250), await mine()); // the broker moves it asynchronously
      expect(found).toHaveLength(1);
      expect(found[0]).toMatchObject({ message: { job_id, epoch: 2 }, machineId: a, reason: 'MaxDeliveryCountExceeded' });
      expect(await h.sender.removeDeadLetters([id])).toEqual([id]);
      expect(await mine()).toEqual([]);
    });

    it('never returns a malformed message, and keeps delivering the good ones', slow, async () => {
      await setup();
      const a = machine('bad');
      await h.sendRaw(a, 'this is not a dispatch message');
      await h.sendRaw(a, JSON.stringify({ job_id: 'job_nope', epoch: -1 }));
      const job_id = newJobId();
      await h.sender.send(a, { job_id, epoch: 4 });
      const r = open(a);
      const got = await receiveN(r, 1, 4000);
      expect(got.map((m) => m.message)).toEqual([{ job_id, epoch: 4 }]);
      // Nothing else is pending right now: the two bad bodies were dropped, not handed out.
      expect(await r.receive(10, 300)).toEqual([]);
      await r.complete(got[0]!);
      await r.close();
      await sleep(timing.releaseMs);
      const again = open(a);
      expect(await again.receive(10, 1000)).toEqual([]);
    });
  });
}

const STORAGE_LOCK_SECONDS = 2;
transportContract('storage-queue transport (Azurite)', { lockMs: STORAGE_LOCK_SECONDS * 1000, releaseMs: STORAGE_LOCK_SECONDS * 1000 + 500 }, async () => {
  const connectionString = inject('emulators').storageConnection;
  const service = QueueServiceClient.fromConnectionString(connectionString);
  const prefix = `t${randomBytes(3).toString('hex')}-`;
  const lockSeconds = STORAGE_LOCK_SECONDS;
  return {
    sender: new StorageQueueSender(service, prefix),
    receiver: (machineId) => createDispatchReceiver({ transport: 'storage-queue', connectionString, queuePrefix: prefix, machineId, lockSeconds }),
    sendRaw: async (machineId, body) => {
      const q = service.getQueueClient(queueNameFor(prefix, machineId));
      await q.createIfNotExists();
      await q.sendMessage(Buffer.from(body).toString('base64'));
    },
    close: async () => {
      for await (const q of service.listQueues({ prefix })) await service.deleteQueue(q.name);
      await service.getQueueClient(deadLetterQueueNameFor(prefix)).deleteIfExists();
    },
  };
});

const sbConnection = process.env.SERVICEBUS_CONNECTION_STRING;
if (sbConnection) {
  // The queue's lock duration (PT5M in infra/); set SERVICEBUS_LOCK_SECONDS for a test queue with a shorter one.
  // Closing a session receiver releases the session at once, so unsettled messages are back within a moment.
  const lockMs = Number(process.env.SERVICEBUS_LOCK_SECONDS ?? 300) * 1000;
  transportContract('servicebus transport (sessions)', { lockMs, releaseMs: 2000 }, async () => {
    const queue = process.env.SERVICEBUS_QUEUE ?? 'jobs';
    const client = new ServiceBusClient(sbConnection);
    const raw = client.createSender(queue);
    return {
      sender: new ServiceBusDispatchSender(() => client, queue),
      // The session auto-renewal is off here so that renew() is what keeps the lock.
      receiver: (machineId) => createDispatchReceiver({ transport: 'servicebus', connectionString: sbConnection, queue, machineId, autoRenewMs: 0 }),
      sendRaw: (machineId, body) => raw.sendMessages({ body, sessionId: machineId }),
      close: async () => {
        await raw.close();
        await client.close();
      },
    };
  });
} else {
  describe.skip('servicebus transport — SKIPPED: no Service Bus namespace (set SERVICEBUS_CONNECTION_STRING to run it)', () => {
    it('runs the same contract against a session-enabled queue', () => undefined);
  });
}

// One contract for every dispatch transport: storage-queue on Azurite (always), and Service Bus on a real namespace
// with a session-enabled queue (SERVICEBUS_QUEUE, default `jobs`) when one is named:
//   SERVICEBUS_NAMESPACE=sb-xxx.servicebus.windows.net   Entra ID through DefaultAzureCredential (az login, managed
//                                                        identity...), as deployed (infra/ disables SAS keys)
//   SERVICEBUS_CONNECTION_STRING=Endpoint=sb://...       a namespace that still allows SAS
// The Service Bus receivers use the agent's production settings (SDK auto-renewal on). Behaviours only one transport
// has are marked: on the other, the test is skipped and the reason is printed, never silently.
// Command: docs/agent-runbook.md#check-the-service-bus-path.
import { randomBytes } from 'node:crypto';
import { DefaultAzureCredential } from '@azure/identity';
import { ServiceBusClient } from '@azure/service-bus';
import { QueueServiceClient } from '@azure/storage-queue';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { newJobId } from '../contract/ids.js';
import { dispatchMessageId } from '../contract/dispatch.js';
import { createDispatchReceiver } from './index.js';
import { ServiceBusDispatchSender } from './servicebus.js';
import { deadLetterQueueNameFor, queueNameFor, StorageQueueSender } from './storage-queue.js';
import { isDispatchLockLost, isSessionBusy, MAX_DELIVERIES, type DispatchReceiver, type DispatchSender, type ReceivedDispatch } from './types.js';

interface Harness {
  sender: DispatchSender;
  receiver(machineId: string): DispatchReceiver;
  /** Puts a body that is not a dispatch message on the machine's channel. */
  sendRaw(machineId: string, body: string): Promise<void>;
  /** Makes `r` lose the lock on what it holds, as this transport loses it in production (see each harness). */
  loseLock(r: DispatchReceiver): Promise<void>;
  /** Service Bus only: cuts the receiver's AMQP connection under it (the socket dies; nothing is closed cleanly). */
  dropConnection?(r: DispatchReceiver): Promise<void>;
  /** Service Bus only: whether the dead-letter queue holds this message id, and why. */
  deadLettered?(messageId: string): Promise<string | undefined>;
  close(): Promise<void>;
}

interface Timing {
  /** How long a received, unrenewed message stays locked. */
  lockMs: number;
  /** After a receiver closed: how long until a message it held but did not settle would be back. */
  releaseMs: number;
}

/** What only some transports do. `false | string`: the string says why this transport cannot show it. */
interface Capabilities {
  /** One receiver per machine at a time (Service Bus sessions); a second one gets SessionBusyError. */
  exclusiveReceiver: true | string;
  /** The broker drops a re-sent message id. */
  duplicateDetection: true | string;
  /** After maxDeliveries deliveries the broker dead-letters the message. */
  maxDeliveries: number | string;
  /** A long-lived connection that can drop under a receiver. */
  connection: true | string;
}

/** it() when the transport can show the behaviour; otherwise a skipped it() whose name and printed line say why. */
function itIf(cap: unknown, name: string, opts: { timeout: number }, fn: () => Promise<void>) {
  if (typeof cap !== 'string') return it(name, opts, fn);
  console.warn(`[transport contract] not run here: ${name} — ${cap}`);
  return it.skip(`${name} — not run here: ${cap}`, fn);
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

function transportContract(name: string, timing: Timing, caps: Capabilities, make: () => Promise<Harness>) {
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

    it('keeps several messages of one machine in flight at once; each settles on its own', slow, async () => {
      await setup();
      const a = machine('many');
      const jobs = [newJobId(), newJobId(), newJobId()];
      for (const [i, job_id] of jobs.entries()) await h.sender.send(a, { job_id, epoch: i + 1 });
      const r = open(a);
      const got = await receiveN(r, 3, 10_000);
      expect(got.map((m) => m.message.job_id).sort()).toEqual([...jobs].sort());
      for (const m of got) await r.renew(m);
      // Settled out of order: the last one first, the first one abandoned and taken again.
      await r.complete(got[2]!);
      await r.complete(got[1]!);
      await r.abandon(got[0]!);
      const [back] = await receiveN(r, 1, 5000);
      expect(back!.message).toEqual(got[0]!.message);
      await r.complete(back!);
      await r.close();
      await sleep(timing.releaseMs);
      expect(await open(a).receive(10, 1000)).toEqual([]);
    });

    it('after a lock is lost the same {job_id, epoch} comes back (for the epoch fence), and the old holder learns it', slow, async () => {
      await setup();
      const a = machine('lost');
      const job_id = newJobId();
      await h.sender.send(a, { job_id, epoch: 6 });
      const first = open(a);
      const [m] = await receiveN(first, 1, 5000);
      await h.loseLock(first);
      const second = open(a);
      const [again] = await receiveN(second, 1, timing.lockMs + 10_000);
      // Same identity: the claim with this epoch gets 409 if the first delivery's run got that far.
      expect(again!.message).toEqual({ job_id, epoch: 6 });
      expect(again!.messageId).toBe(m!.messageId);
      expect(again!.deliveryCount).toBeGreaterThan(m!.deliveryCount);
      const renewErr = await first.renew(m!).catch((e: unknown) => e);
      expect(isDispatchLockLost(renewErr)).toBe(true);
      await expect(first.complete(m!)).resolves.toBeUndefined(); // quietly: the message is someone else's now
      await second.complete(again!);
    });

    it('a re-sent dispatch (same job_id:epoch) reaches the agent at most as often as the transport promises', slow, async () => {
      await setup();
      const a = machine('dup');
      const job_id = newJobId();
      await h.sender.send(a, { job_id, epoch: 8 });
      await h.sender.send(a, { job_id, epoch: 8 });
      const r = open(a);
      const got = await receiveN(r, 2, 6000);
      if (caps.duplicateDetection === true) {
        expect(got.map((m) => m.messageId)).toEqual([`${job_id}:8`]);
      } else {
        // No broker-side detection: the copy reaches the agent, whose claim (same epoch) answers 409 and drops it.
        console.warn(`[transport contract] ${name}: ${caps.duplicateDetection}`);
        expect(got.map((m) => m.messageId)).toEqual([`${job_id}:8`, `${job_id}:8`]);
      }
      for (const m of got) await r.complete(m);
    });

    itIf(caps.exclusiveReceiver, 'a receiver started while another still holds the machine gets SessionBusyError, then the message', slow, async () => {
      await setup();
      const a = machine('busy');
      const job_id = newJobId();
      await h.sender.send(a, { job_id, epoch: 9 });
      const stale = open(a);
      const [m] = await receiveN(stale, 1, 5000);
      const fresh = open(a);
      // Loud, not an empty answer: the agent logs it and heartbeats `receiving: false`.
      const err = await fresh.receive(1, 1000).catch((e: unknown) => e);
      expect(isSessionBusy(err)).toBe(true);
      await stale.close(); // the stale agent stops: its session is free at once
      let again: ReceivedDispatch[] = [];
      const deadline = Date.now() + 30_000;
      while (again.length === 0 && Date.now() < deadline) again = await fresh.receive(1, 1000).catch((e: unknown) => (isSessionBusy(e) ? [] : Promise.reject(e)));
      expect(again.map((x) => x.message)).toEqual([{ job_id, epoch: 9 }]);
      expect(again[0]!.deliveryCount).toBe(m!.deliveryCount + 1);
      await fresh.complete(again[0]!);
    });

    itIf(caps.connection, 'a dropped connection: the receiver re-accepts the session (busy until the broker frees it) and the message comes back', { timeout: 60_000 + 3 * timing.lockMs }, async () => {
      await setup();
      const a = machine('drop');
      const job_id = newJobId();
      await h.sender.send(a, { job_id, epoch: 10 });
      const r = open(a);
      const [m] = await receiveN(r, 1, 5000);
      await h.dropConnection!(r);
      let busy = 0;
      let again: ReceivedDispatch[] = [];
      const deadline = Date.now() + timing.lockMs + 45_000;
      while (again.length === 0 && Date.now() < deadline) {
        again = await r.receive(1, 2000).catch((e: unknown) => {
          if (!isSessionBusy(e)) throw e; // only "busy" is expected while the broker still holds the old lock
          busy++;
          return sleep(1000).then(() => []);
        });
      }
      console.warn(`[transport contract] dropped connection: ${busy} SessionBusyError answer(s) before the session was held again`);
      expect(again.map((x) => x.message)).toEqual([{ job_id, epoch: 10 }]);
      expect(again[0]!.deliveryCount).toBeGreaterThan(m!.deliveryCount);
      expect(isDispatchLockLost(await r.renew(m!).catch((e: unknown) => e))).toBe(true);
      await r.complete(again[0]!);
    });

    itIf(caps.maxDeliveries, 'dead-letters a message after the maximum number of deliveries', { timeout: 120_000 }, async () => {
      await setup();
      const max = caps.maxDeliveries as number;
      const a = machine('dlq');
      const job_id = newJobId();
      await h.sender.send(a, { job_id, epoch: 11 });
      const r = open(a);
      for (let i = 1; i <= max; i++) {
        const [m] = await receiveN(r, 1, 10_000);
        expect(m!.deliveryCount).toBe(i);
        await r.abandon(m!);
      }
      expect(await r.receive(10, 2000)).toEqual([]);
      let reason: string | undefined;
      const deadline = Date.now() + 30_000;
      while (!reason && Date.now() < deadline) reason = await h.deadLettered!(`${job_id}:11`);
      expect(reason).toBe('MaxDeliveryCountExceeded');
    });
  });
}

const STORAGE_LOCK_SECONDS = 2;
const storageCaps: Capabilities = {
  exclusiveReceiver: 'Azurite/Storage queues have no exclusive receiver per machine (no sessions); locks are per message',
  duplicateDetection: 'Storage queues have no duplicate detection',
  maxDeliveries: 'Storage queues count dequeues but never dead-letter; the reaper and the job attempt limit bound redeliveries',
  connection: 'Storage queue calls are independent HTTPS requests: there is no connection or session lock to drop',
};
transportContract('storage-queue transport (Azurite)', { lockMs: STORAGE_LOCK_SECONDS * 1000, releaseMs: STORAGE_LOCK_SECONDS * 1000 + 500 }, storageCaps, async () => {
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
    // A Storage "lock" is the visibility timeout: it is lost when it lapses unrenewed (an agent that stalled or died).
    loseLock: () => sleep(lockSeconds * 1000 + 500),
    close: async () => {
      for await (const q of service.listQueues({ prefix })) await service.deleteQueue(q.name);
      await service.getQueueClient(deadLetterQueueNameFor(prefix)).deleteIfExists();
    },
  };
});

const sbNamespace = process.env.SERVICEBUS_NAMESPACE;
const sbConnection = process.env.SERVICEBUS_CONNECTION_STRING;
if (sbNamespace || sbConnection) {
  // The queue's lock duration (PT1M in infra/) and maxDeliveryCount (10): set these for a queue created otherwise.
  const lockMs = Number(process.env.SERVICEBUS_LOCK_SECONDS ?? 60) * 1000;
  const maxDeliveries = Number(process.env.SERVICEBUS_MAX_DELIVERY_COUNT ?? 10);
  const caps: Capabilities = { exclusiveReceiver: true, duplicateDetection: true, maxDeliveries, connection: true };
  const auth = sbNamespace ? `Entra ID (DefaultAzureCredential) on ${sbNamespace}` : 'a SAS connection string';
  // Closing a session receiver releases the session at once, so unsettled messages are back within a moment.
  transportContract(`servicebus transport (sessions, ${auth})`, { lockMs, releaseMs: 2000 }, caps, async () => {
    const queue = process.env.SERVICEBUS_QUEUE ?? 'jobs';
    const credential = sbNamespace ? new DefaultAzureCredential() : undefined;
    const client = sbNamespace ? new ServiceBusClient(sbNamespace, credential!) : new ServiceBusClient(sbConnection!);
    const raw = client.createSender(queue);
    const dlq = client.createReceiver(queue, { subQueueType: 'deadLetter' });
    return {
      sender: new ServiceBusDispatchSender(() => client, queue),
      // The agent's production settings: createDispatchReceiver's defaults (SDK auto-renewal on, 1 h).
      receiver: (machineId) =>
        sbNamespace
          ? createDispatchReceiver({ transport: 'servicebus', fullyQualifiedNamespace: sbNamespace, credential, queue, machineId })
          : createDispatchReceiver({ transport: 'servicebus', connectionString: sbConnection!, queue, machineId }),
      sendRaw: (machineId, body) => raw.sendMessages({ body, sessionId: machineId }),
      // With auto-renewal on, a live receiver keeps its lock; it loses it when it goes away (the agent restarting).
      loseLock: (r) => r.close(),
      dropConnection: async (r) => {
        // The receiver's own AMQP socket, destroyed as a network failure would (SDK internals, test only:
        // ServiceBusClient._connectionContext.connection is rhea-promise's Connection, whose _connection is rhea's).
        const sdk = (r as unknown as { client?: { _connectionContext?: { connection?: { _connection?: { socket?: { destroy(): void } } } } } }).client;
        const socket = sdk?._connectionContext?.connection?._connection?.socket;
        if (!socket) throw new Error('cannot reach the AMQP socket of this SDK version (ServiceBusClient._connectionContext.connection._connection.socket)');
        socket.destroy();
      },
      deadLettered: async (messageId) => {
        const peeked = await dlq.peekMessages(100);
        const m = peeked.find((x) => x.messageId === messageId);
        return m ? String(m.deadLetterReason) : undefined;
      },
      close: async () => {
        await dlq.close();
        await raw.close();
        await client.close();
      },
    };
  });
} else {
  const why = 'no Service Bus namespace: set SERVICEBUS_NAMESPACE (Entra ID) or SERVICEBUS_CONNECTION_STRING to run it';
  console.warn(`[transport contract] servicebus transport not run: ${why}`);
  describe.skip(`servicebus transport — not run here: ${why}`, () => {
    it('runs the same contract, plus sessions, duplicate detection, dead-lettering and dropped connections, on a real namespace', () => undefined);
  });
}

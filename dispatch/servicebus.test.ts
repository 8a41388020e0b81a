// Unit tests of the Service Bus transport against a scripted SDK (test/support/servicebus-fake.ts) whose errors are
// built as @azure/service-bus 7.9.5 builds them. What a real namespace adds is in transport.contract.test.ts.
import { describe, expect, it } from 'vitest';
import { newJobId } from '../contract/ids.js';
import {
  FakeServiceBusClient,
  FakeSession,
  afterRetries,
  communicationProblem,
  receiverClosedByUs,
  sbMessage,
  sessionCannotBeLocked,
  sessionLockLost,
  sessionOpenTimeout,
  settleTimeout,
  untilAborted,
} from '../test/support/servicebus-fake.js';
import { DEFAULT_AUTO_RENEW_MS, SENDER_RETRY_OPTIONS, SEND_TIMEOUT_MS, ServiceBusDispatchReceiver, ServiceBusDispatchSender, isLockLostError } from './servicebus.js';
import { isDispatchLockLost, isSessionBusy, type ReceivedDispatch } from './types.js';

const Q = 'jobs';
const M = 'gpu-unit-01';

function setup(opts: ConstructorParameters<typeof ServiceBusDispatchReceiver>[3] = {}) {
  const fake = new FakeServiceBusClient();
  const warnings: { fields: Record<string, unknown>; msg: string }[] = [];
  const receiver = new ServiceBusDispatchReceiver(fake.asClient(), Q, M, { warn: (fields, msg) => warnings.push({ fields, msg }), ...opts });
  return { fake, receiver, warnings };
}

/** A session whose first receive hands out these messages. */
function withMessages(fake: FakeServiceBusClient, ...bodies: unknown[]): void {
  fake.onSession = (s) => s.script.receive.push(bodies.map((b, i) => sbMessage(b, { messageId: `m${i}`, sessionId: M })));
}

async function oneMessage(): Promise<{ fake: FakeServiceBusClient; receiver: ServiceBusDispatchReceiver; m: ReceivedDispatch; session: FakeSession }> {
  const { fake, receiver } = setup();
  const job_id = newJobId();
  withMessages(fake, { job_id, epoch: 3 });
  const [m] = await receiver.receive(1, 50);
  return { fake, receiver, m: m!, session: fake.sessions[0]! };
}

describe('session busy (item 1)', () => {
  it('SessionCannotBeLocked from acceptSession is a SessionBusyError, retried on the next receive', async () => {
    const { fake, receiver } = setup();
    fake.accept.push(sessionCannotBeLocked(M), sessionCannotBeLocked(M));
    withMessages(fake, { job_id: newJobId(), epoch: 1 });
    for (let i = 0; i < 2; i++) {
      const err = await receiver.receive(1, 50).catch((e: unknown) => e);
      expect(isSessionBusy(err)).toBe(true);
      expect((err as Error).message).toMatch(/held by another receiver \(SessionCannotBeLocked\)/);
      const cause = (err as Error).cause as { name: string; code: string; retryable: boolean };
      expect([cause.name, cause.code, cause.retryable]).toEqual(['ServiceBusError', 'SessionCannotBeLocked', false]);
    }
    // The lock lapsed: the third attempt holds the session and receives.
    const got = await receiver.receive(1, 50);
    expect(got).toHaveLength(1);
    expect(fake.accepts).toHaveLength(3);
  });

  it('ServiceTimeout while opening the session link is a SessionBusyError too', async () => {
    const { fake, receiver } = setup();
    fake.accept.push(sessionOpenTimeout());
    const err = await receiver.receive(1, 50).catch((e: unknown) => e);
    expect(isSessionBusy(err)).toBe(true);
    const cause = (err as Error).cause as { code: string; retryable: boolean };
    expect([cause.code, cause.retryable]).toEqual(['ServiceTimeout', true]);
  });

  it('an acceptSession that does not answer is bounded by its own abort signal', async () => {
    const { fake, receiver } = setup({ acceptTimeoutMs: 30 });
    fake.accept.push((o: { abortSignal?: AbortSignal }) => untilAborted(o.abortSignal));
    const err = await receiver.receive(1, 50).catch((e: unknown) => e);
    expect(isSessionBusy(err)).toBe(true);
    expect((err as Error).message).toMatch(/no answer within 30 ms/);
    expect(fake.accepts[0]!.options.abortSignal?.aborted).toBe(true);
  });

  it('close() aborts an acceptSession in progress (shutdown is not held up by it)', async () => {
    const { fake, receiver } = setup({ acceptTimeoutMs: 3_600_000 });
    fake.accept.push((o: { abortSignal?: AbortSignal }) => untilAborted(o.abortSignal));
    const pending = receiver.receive(1, 50).catch((e: unknown) => e);
    await new Promise((r) => setImmediate(r));
    await receiver.close();
    const err = await pending;
    expect((err as Error).message).toBe('receiver is closed');
    expect(isSessionBusy(err)).toBe(false);
    expect(fake.accepts[0]!.options.abortSignal?.aborted).toBe(true);
  });

  it('other accept failures are not "busy": they surface as they are', async () => {
    const { fake, receiver } = setup();
    fake.accept.push(communicationProblem());
    const err = await receiver.receive(1, 50).catch((e: unknown) => e);
    expect(isSessionBusy(err)).toBe(false);
    expect((err as { code: string }).code).toBe('ServiceCommunicationProblem');
  });
});

describe('auto-renewal settings (item 6)', () => {
  it('passes a finite auto-renew duration (1 h by default) and refuses Infinity', async () => {
    const { fake, receiver } = setup();
    await receiver.receive(1, 10);
    expect(fake.accepts[0]!.options.maxAutoLockRenewalDurationInMs).toBe(DEFAULT_AUTO_RENEW_MS);
    expect(fake.accepts[0]!.options.receiveMode).toBe('peekLock');
    // `new Date(Date.now() + Infinity)` is an invalid date: the SDK would silently never renew.
    expect(() => new ServiceBusDispatchReceiver(fake.asClient(), Q, M, { autoRenewMs: Infinity })).toThrow(RangeError);
    expect(() => new ServiceBusDispatchReceiver(fake.asClient(), Q, M, { autoRenewMs: -1 })).toThrow(RangeError);
  });
});

describe('malformed messages in a batch (item 3)', () => {
  it('a dead-letter that fails does not throw the rest of the locked batch away', async () => {
    const { fake, receiver, warnings } = setup();
    const a = newJobId();
    const b = newJobId();
    withMessages(fake, 'not json at all', { job_id: a, epoch: 1 }, { job_id: 'job_nope', epoch: -1 }, { job_id: b, epoch: 2 });
    fake.onSession = ((prev) => (s: FakeSession) => {
      prev(s);
      s.script.deadLetter.push(settleTimeout()); // the first dead-letter times out; the second works
    })(fake.onSession);
    const got = await receiver.receive(10, 50);
    expect(got.map((m) => m.message)).toEqual([
      { job_id: a, epoch: 1 },
      { job_id: b, epoch: 2 },
    ]);
    const s = fake.sessions[0]!;
    expect(s.calls.deadLetter).toHaveLength(2);
    expect(warnings.map((w) => w.msg)).toEqual(['could not dead-letter a malformed dispatch message; it will come back']);
    // The handed-out messages are still settleable on the same session.
    await receiver.complete(got[0]!);
    expect(s.calls.complete).toHaveLength(1);
  });
});

describe('settlement and renewal errors (items 4, 6)', () => {
  it('complete() after we closed that session receiver (plain Error) succeeds quietly; renew() says the lock is lost', async () => {
    const { receiver, m, session } = await oneMessage();
    await session.asReceiver().close(); // e.g. the agent re-accepted the session meanwhile
    await expect(receiver.complete(m)).resolves.toBeUndefined();
    await expect(receiver.abandon(m)).resolves.toBeUndefined();
    const err = await receiver.renew(m).catch((e: unknown) => e);
    expect(isDispatchLockLost(err)).toBe(true);
    expect(((err as Error).cause as Error).message).toBe(receiverClosedByUs(Q, M).message);
  });

  it('an AggregateError that ends in lock loss (after retries) counts as lock loss', async () => {
    const { receiver, m, session } = await oneMessage();
    session.script.complete.push(afterRetries(settleTimeout(), sessionLockLost(M)));
    session.script.renew.push(afterRetries(settleTimeout(), sessionLockLost(M)));
    await expect(receiver.complete(m)).resolves.toBeUndefined();
    const err = await receiver.renew(m).catch((e: unknown) => e);
    expect(isDispatchLockLost(err)).toBe(true);
  });

  it('transient failures are not lock loss: complete() rethrows them and renew() leaves the lock to the next try', async () => {
    const { receiver, m, session } = await oneMessage();
    session.script.complete.push(afterRetries(settleTimeout(), settleTimeout()));
    session.script.renew.push(settleTimeout(), afterRetries(settleTimeout(), settleTimeout()));
    const c = await receiver.complete(m).catch((e: unknown) => e);
    expect(c).toBeInstanceOf(AggregateError);
    for (let i = 0; i < 2; i++) {
      const r = await receiver.renew(m).catch((e: unknown) => e);
      expect(r).toBeInstanceOf(Error);
      expect(isDispatchLockLost(r)).toBe(false);
    }
    await expect(receiver.renew(m)).resolves.toBeUndefined(); // the lock was never lost
    expect(session.calls.renew).toBe(3);
    expect(session.renewSignals.every((s) => s instanceof AbortSignal)).toBe(true);
  });

  it('SessionLockLost on renew (the SDK closed the link) is lock loss, and the next receive accepts the session again', async () => {
    const { fake, receiver, m, session } = await oneMessage();
    session.sdkClosed = true; // the broker detached the link: the SDK closes it and does not reconnect
    const err = await receiver.renew(m).catch((e: unknown) => e);
    expect(isDispatchLockLost(err)).toBe(true);
    expect(((err as Error).cause as { code: string }).code).toBe('SessionLockLost');
    await receiver.receive(1, 10);
    expect(fake.accepts).toHaveLength(2);
  });

  it('a receiver the SDK closed by itself is still close()d before the session is accepted again', async () => {
    const { fake, receiver, session } = await oneMessage();
    session.sdkClosed = true;
    expect(session.closeCalls).toBe(0);
    await receiver.receive(1, 10);
    expect(session.closeCalls).toBe(1);
    expect(fake.sessions).toHaveLength(2);
  });

  it('lock loss while receiving drops the session and returns nothing; a communication problem is thrown', async () => {
    const { fake, receiver } = setup();
    fake.onSession = (s) => s.script.receive.push(sessionLockLost(M));
    expect(await receiver.receive(1, 10)).toEqual([]);
    expect(fake.sessions[0]!.closeCalls).toBe(1);
    fake.onSession = (s) => s.script.receive.push(communicationProblem());
    const err = await receiver.receive(1, 10).catch((e: unknown) => e);
    expect((err as { code: string }).code).toBe('ServiceCommunicationProblem');
  });

  it('classifies the SDK shapes of lock loss, and nothing else', () => {
    expect(isLockLostError(sessionLockLost(M))).toBe(true);
    expect(isLockLostError(afterRetries(settleTimeout(), sessionLockLost(M)))).toBe(true);
    expect(isLockLostError(receiverClosedByUs(Q, M))).toBe(true);
    expect(isLockLostError(new Error('The underlying AMQP connection is closed.'))).toBe(true);
    expect(isLockLostError(settleTimeout())).toBe(false);
    expect(isLockLostError(afterRetries(settleTimeout(), communicationProblem()))).toBe(false);
    expect(isLockLostError(sessionCannotBeLocked(M))).toBe(false);
    expect(isLockLostError(new Error('boom'))).toBe(false);
  });
});

describe('bounded sends (item 2)', () => {
  it('every send carries an abort signal: a send that never answers fails instead of stalling the tick', async () => {
    const fake = new FakeServiceBusClient();
    fake.sendBehaviour = (o) => untilAborted(o?.abortSignal);
    const sender = new ServiceBusDispatchSender(() => fake.asClient(), Q, { sendTimeoutMs: 25 });
    const err = await sender.send(M, { job_id: newJobId(), epoch: 1 }).catch((e: unknown) => e);
    expect((err as Error).name).toBe('AbortError');
    expect(fake.sends[0]!.options?.abortSignal?.aborted).toBe(true);
    await expect(sender.health()).rejects.toMatchObject({ name: 'AbortError' });
  });

  it('sends with session id = machine id and messageId = job_id:epoch', async () => {
    const fake = new FakeServiceBusClient();
    const sender = new ServiceBusDispatchSender(() => fake.asClient(), Q);
    const job_id = newJobId();
    await sender.send(M, { job_id, epoch: 4 });
    expect(fake.sends[0]!.message).toMatchObject({ sessionId: M, messageId: `${job_id}:4`, body: { job_id, epoch: 4 } });
  });

  it('the client retry options fit several attempts inside the send bound (SDK defaults: ~5.5 min)', () => {
    const o = SENDER_RETRY_OPTIONS;
    const attempts = o.maxRetries! + 1;
    expect(o.timeoutInMs! * 2).toBeLessThanOrEqual(SEND_TIMEOUT_MS + o.retryDelayInMs!);
    expect(attempts).toBeGreaterThanOrEqual(2);
    expect(() => new ServiceBusDispatchSender(() => new FakeServiceBusClient().asClient(), Q, { sendTimeoutMs: Infinity })).toThrow(RangeError);
  });
});

describe("the Functions app's Service Bus client (item 2)", () => {
  it('is built with the short sender retry options, not the SDK defaults', async () => {
    const { AzureClients } = await import('../functions/adapters/azure-clients.js');
    const { loadConfig } = await import('../functions/core/config.js');
    const { sampleSettings } = await import('../local/settings.js');
    const clients = new AzureClients(
      loadConfig({ ...sampleSettings(), DISPATCH_TRANSPORT: 'servicebus', ServiceBus: 'Endpoint=sb://unit.servicebus.windows.net/;SharedAccessKeyName=k;SharedAccessKey=a2V5' }),
    );
    // No connection is made by building the client. `_clientOptions` is the SDK's own field (serviceBusClient.js).
    const options = (clients.serviceBusClient as unknown as { _clientOptions: { retryOptions?: unknown } })._clientOptions;
    expect(options.retryOptions).toEqual(SENDER_RETRY_OPTIONS);
    await clients.close();
  });
});

// A scripted stand-in for the parts of @azure/service-bus 7.9.5 the dispatch transport uses (ServiceBusClient.acceptSession /
// createSender, ServiceBusSessionReceiver), for unit tests of dispatch/servicebus.ts. Errors are built the way the SDK
// builds them (node_modules/@azure/service-bus/dist-esm/src/serviceBusError.js, @azure/core-amqp errors.js/retry.js),
// so the code under test sees the same names, codes, `retryable` flags and shapes as in production.
import { translate, type MessagingError } from '@azure/core-amqp';
import { ServiceBusError, type ServiceBusClient, type ServiceBusReceivedMessage, type ServiceBusSessionReceiver } from '@azure/service-bus';
import { OperationTimeoutError } from 'rhea-promise';

/** What the SDK's translateServiceBusError makes of an AMQP error the broker sent (condition + description). */
export function brokerError(condition: string, description: string): ServiceBusError {
  return new ServiceBusError(translate({ condition, description }) as MessagingError);
}

/** The broker refuses the session: another receiver holds its lock (MessageSession.createRheaLink). */
export const sessionCannotBeLocked = (sessionId: string) =>
  brokerError('com.microsoft:session-cannot-be-locked', `Failed to create a receiver for the requested session '${sessionId}'. It may be locked by another receiver.`);

/** Opening the session link timed out in rhea-promise (OperationTimeoutError), as MessageSession._init translates it. */
export const sessionOpenTimeout = () => new ServiceBusError(translate(new OperationTimeoutError('Unable to open the amqp receiver within 60 seconds')) as MessagingError);

/** ServiceBusSessionReceiverImpl._throwIfReceiverOrConnectionClosed when the SDK itself closed the link. */
export const sessionLockLost = (sessionId: string) => brokerError('com.microsoft:session-lock-lost', `The session lock has expired on the session with id ${sessionId}`);

/** MessageSession.settleMessage's timer: the disposition got no answer in time (retryable). */
export const settleTimeout = () =>
  brokerError('com.microsoft:timeout', 'Operation to settle the message has timed out. The disposition of the message may or may not be successful');

/** The connection could not be used (ServiceCommunicationProblem, not retryable). */
export const communicationProblem = () => brokerError('amqp:not-found', 'The service was unable to process the request; connection lost');

/** getReceiverClosedErrorMsg: a plain Error once *we* closed the session receiver. */
export const receiverClosedByUs = (queue: string, sessionId: string) =>
  new Error(
    `The receiver for session "${sessionId}" in "${queue}" has been closed and can no longer be used. ` +
      'Please create a new receiver using the "acceptSession" or "acceptNextSession" method on the ServiceBusClient.',
  );

/** core-amqp retry(): every attempt's error translated again, thrown together once more than one attempt failed. */
export const afterRetries = (...errors: Error[]) => new AggregateError(errors.map((e) => translate(e)));

/** The SDK's AbortError (from @azure/abort-controller), thrown when an operation's abortSignal fires. */
export function abortError(): Error {
  const e = new Error('The operation was aborted.');
  e.name = 'AbortError';
  return e;
}

/** Resolves with `value` unless the signal fires first (then rejects with AbortError, as the SDK does). */
export function untilAborted<T>(signal: AbortSignal | undefined, value?: Promise<T>): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    if (signal?.aborted) return reject(abortError());
    signal?.addEventListener('abort', () => reject(abortError()), { once: true });
    value?.then(resolve, reject);
  });
}

export function sbMessage(body: unknown, opts: { messageId?: string; deliveryCount?: number; sessionId?: string } = {}): ServiceBusReceivedMessage {
  return { body, messageId: opts.messageId, deliveryCount: opts.deliveryCount ?? 0, sessionId: opts.sessionId } as unknown as ServiceBusReceivedMessage;
}

type Step<T> = T | Error | ((...args: any[]) => Promise<T> | T);
async function play<T>(step: Step<T> | undefined, fallback: () => Promise<T> | T, args: unknown[]): Promise<T> {
  if (step === undefined) return fallback();
  if (step instanceof Error) throw step;
  if (typeof step === 'function') return (step as (...a: unknown[]) => Promise<T> | T)(...args);
  return step;
}

/** One accepted session. Each method plays its scripted steps in order, then a default. */
export class FakeSession {
  closeCalls = 0;
  /** Set when the SDK closed the link by itself (lock lost, connection detached); `close()` was not called. */
  sdkClosed = false;
  private weClosed = false;
  lockedUntil = new Date(Date.now() + 60_000);
  readonly calls = { receive: 0, complete: [] as ServiceBusReceivedMessage[], abandon: [] as ServiceBusReceivedMessage[], deadLetter: [] as ServiceBusReceivedMessage[], renew: 0 };
  readonly script = {
    receive: [] as Step<ServiceBusReceivedMessage[]>[],
    complete: [] as Step<void>[],
    abandon: [] as Step<void>[],
    deadLetter: [] as Step<void>[],
    renew: [] as Step<Date>[],
  };
  readonly renewSignals: (AbortSignal | undefined)[] = [];

  constructor(
    readonly queue: string,
    readonly sessionId: string,
  ) {}

  get isClosed(): boolean {
    return this.weClosed || this.sdkClosed;
  }

  /** What the SDK's methods do first (_throwIfReceiverOrConnectionClosed). */
  private guard(): void {
    if (this.weClosed) throw receiverClosedByUs(this.queue, this.sessionId);
    if (this.sdkClosed) throw sessionLockLost(this.sessionId);
  }

  asReceiver(): ServiceBusSessionReceiver {
    const self = this;
    return {
      get isClosed() {
        return self.isClosed;
      },
      get sessionLockedUntilUtc() {
        return self.lockedUntil;
      },
      sessionId: this.sessionId,
      async receiveMessages(_max: number, _o?: { maxWaitTimeInMs?: number; abortSignal?: AbortSignal }) {
        self.guard();
        self.calls.receive++;
        // Nothing scripted: like the SDK, wait (up to maxWaitTimeInMs, capped for tests) and return nothing.
        return play(self.script.receive.shift(), () => new Promise<ServiceBusReceivedMessage[]>((r) => setTimeout(() => r([]), Math.max(5, Math.min(_o?.maxWaitTimeInMs ?? 50, 50)))), [_max, _o]);
      },
      async completeMessage(m: ServiceBusReceivedMessage) {
        self.guard();
        self.calls.complete.push(m);
        return play(self.script.complete.shift(), () => undefined, [m]);
      },
      async abandonMessage(m: ServiceBusReceivedMessage) {
        self.guard();
        self.calls.abandon.push(m);
        return play(self.script.abandon.shift(), () => undefined, [m]);
      },
      async deadLetterMessage(m: ServiceBusReceivedMessage) {
        self.guard();
        self.calls.deadLetter.push(m);
        return play(self.script.deadLetter.shift(), () => undefined, [m]);
      },
      async renewSessionLock(o?: { abortSignal?: AbortSignal }) {
        self.guard();
        self.calls.renew++;
        self.renewSignals.push(o?.abortSignal);
        self.lockedUntil = await play(self.script.renew.shift(), () => new Date(Date.now() + 60_000), [o]);
        return self.lockedUntil;
      },
      async close() {
        self.closeCalls++;
        self.weClosed = true;
      },
    } as unknown as ServiceBusSessionReceiver;
  }
}

export interface AcceptCall {
  queue: string;
  sessionId: string;
  options: { maxAutoLockRenewalDurationInMs?: number; abortSignal?: AbortSignal; receiveMode?: string };
}

/** acceptSession plays `accept` steps (an Error rejects; a function decides), else hands out a fresh FakeSession. */
export class FakeServiceBusClient {
  readonly accepts: AcceptCall[] = [];
  readonly sessions: FakeSession[] = [];
  readonly accept: Step<FakeSession | undefined>[] = [];
  /** Prepares each new session (e.g. scripts its receive). */
  onSession: (s: FakeSession) => void = () => undefined;
  closed = false;
  readonly sends: { message: unknown; options?: { abortSignal?: AbortSignal } }[] = [];
  /** How a send behaves; default: resolves at once. */
  sendBehaviour: (options?: { abortSignal?: AbortSignal }) => Promise<void> = async () => undefined;

  asClient(): ServiceBusClient {
    const self = this;
    return {
      async acceptSession(queue: string, sessionId: string, options: AcceptCall['options']) {
        self.accepts.push({ queue, sessionId, options });
        const chosen = await play(self.accept.shift(), () => undefined, [options]);
        const s = chosen ?? new FakeSession(queue, sessionId);
        self.sessions.push(s);
        self.onSession(s);
        return s.asReceiver();
      },
      createSender(_queue: string) {
        return {
          async sendMessages(message: unknown, options?: { abortSignal?: AbortSignal }) {
            self.sends.push({ message, options });
            return self.sendBehaviour(options);
          },
          async createMessageBatch(options?: { abortSignal?: AbortSignal }) {
            return self.sendBehaviour(options);
          },
          async close() {},
        };
      },
      async close() {
        self.closed = true;
      },
    } as unknown as ServiceBusClient;
  }
}

// Picks the dispatch transport from plain options. The Functions app sends (createDispatchSender; the app keeps one
// sender per set of SDK clients in functions/adapters/dispatch-sender.ts); each agent receives its own machine's
// messages (createDispatchReceiver, from the agent's settings).
import { ServiceBusClient } from '@azure/service-bus';
import { QueueServiceClient } from '@azure/storage-queue';
import { machineIdSchema } from '../contract/ids.js';
import { credentialFor, type IdentityOptions } from './credential.js';
import { RECEIVER_RETRY_OPTIONS, ServiceBusDispatchReceiver, ServiceBusDispatchSender, type ServiceBusReceiverOptions } from './servicebus.js';
import { StorageQueueReceiver, StorageQueueSender, type StorageQueueReceiverOptions } from './storage-queue.js';
import { MAX_DELIVERIES, type DispatchReceiver, type DispatchSender } from './types.js';

export type { DispatchReceiver, DispatchSender, ReceivedDispatch } from './types.js';
export { DispatchLockLostError, SessionBusyError, isDispatchLockLost, isSessionBusy } from './types.js';
export { queueNameFor } from './storage-queue.js';
export { SENDER_RETRY_OPTIONS, SEND_TIMEOUT_MS } from './servicebus.js';

/** What a sender needs: plain settings and SDK clients, built by the caller (the Functions app, a test). */
export type DispatchSenderOptions =
  | { transport: 'storage-queue'; queueService: QueueServiceClient; queuePrefix: string }
  | {
      transport: 'servicebus';
      /** Called on first send, so no connection is built until one is needed. */
      serviceBusClient: () => ServiceBusClient;
      queue: string;
    };

/** The sender for one transport. Builds no connection until first use. */
export function createDispatchSender(options: DispatchSenderOptions): DispatchSender {
  switch (options.transport) {
    case 'storage-queue':
      return new StorageQueueSender(options.queueService, options.queuePrefix);
    case 'servicebus':
      return new ServiceBusDispatchSender(options.serviceBusClient, options.queue);
  }
}

export type { IdentityOptions } from './credential.js';

export type DispatchReceiverOptions = {
  /** The agent's own machine id: it receives this machine's dispatches and nobody else's. */
  machineId: string;
  /** Storage queue: visibility timeout of a received message (renew() extends it). Default 60 s. */
  lockSeconds?: number;
} & (
  | ({
      transport: 'storage-queue';
      /** DISPATCH_QUEUE_PREFIX, as the app uses it (default `machine-`). */
      queuePrefix: string;
    } & StorageQueueReceiverOptions &
      ({ connectionString: string } | ({ queueServiceUri: string } & IdentityOptions)))
  | ({
      transport: 'servicebus';
      /** SERVICEBUS_QUEUE (default `jobs`). */
      queue: string;
      /** How long the SDK renews the session lock by itself (default 1 h; the receiver re-accepts when it lapses). Finite. */
      autoRenewMs?: number;
    } & Pick<ServiceBusReceiverOptions, 'warn'> & ({ connectionString: string } | ({ fullyQualifiedNamespace: string } & IdentityOptions)))
);

/** The agent's receiver. It owns its SDK client and closes it on close(). */
export function createDispatchReceiver(options: DispatchReceiverOptions): DispatchReceiver {
  const machineId = machineIdSchema.parse(options.machineId);
  if (options.transport === 'storage-queue') {
    const service =
      'connectionString' in options
        ? QueueServiceClient.fromConnectionString(options.connectionString)
        : new QueueServiceClient(options.queueServiceUri, credentialFor(options));
    return new StorageQueueReceiver(service, options.queuePrefix, machineId, options.lockSeconds ?? 60, MAX_DELIVERIES, { simulateSessionBusyFile: options.simulateSessionBusyFile });
  }
  const clientOptions = { retryOptions: RECEIVER_RETRY_OPTIONS };
  const client =
    'connectionString' in options
      ? new ServiceBusClient(options.connectionString, clientOptions)
      : new ServiceBusClient(options.fullyQualifiedNamespace, credentialFor(options), clientOptions);
  return new ServiceBusDispatchReceiver(client, options.queue, machineId, { ownsClient: true, autoRenewMs: options.autoRenewMs, warn: options.warn });
}

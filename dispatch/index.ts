// Picks the dispatch transport. The Functions app sends (createDispatchSender, from its app settings); each agent
// receives its own machine's messages (createDispatchReceiver, from the agent's settings).
import { DefaultAzureCredential, ManagedIdentityCredential, type TokenCredential } from '@azure/identity';
import { ServiceBusClient } from '@azure/service-bus';
import { QueueServiceClient } from '@azure/storage-queue';
import { machineIdSchema } from '../contract/ids.js';
import type { AzureClients } from '../functions/adapters/azure-clients.js';
import { RECEIVER_RETRY_OPTIONS, ServiceBusDispatchReceiver, ServiceBusDispatchSender, type ServiceBusReceiverOptions } from './servicebus.js';
import { StorageQueueReceiver, StorageQueueSender, type StorageQueueReceiverOptions } from './storage-queue.js';
import type { DispatchReceiver, DispatchSender } from './types.js';

export type { DispatchReceiver, DispatchSender, ReceivedDispatch } from './types.js';
export { DispatchLockLostError, SessionBusyError, isDispatchLockLost, isSessionBusy } from './types.js';
export { queueNameFor } from './storage-queue.js';

/** The sender for the configured transport (DISPATCH_TRANSPORT). Builds no connection until first use. */
export function createDispatchSender(clients: AzureClients): DispatchSender {
  const cfg = clients.config;
  switch (cfg.transport) {
    case 'storage-queue':
      return new StorageQueueSender(clients.queueService, cfg.storageQueuePrefix);
    case 'servicebus':
      return new ServiceBusDispatchSender(() => clients.serviceBusClient, cfg.serviceBusQueue);
  }
}

const senders = new WeakMap<AzureClients, DispatchSender>();

/** The one dispatch sender of a set of SDK clients, built on first use (the tick and the health probe share it). */
export function dispatchSenderFor(clients: AzureClients): DispatchSender {
  let sender = senders.get(clients);
  if (!sender) {
    sender = createDispatchSender(clients);
    senders.set(clients, sender);
  }
  return sender;
}

/** Identity for Azure: a token credential, or a user-assigned identity's client id (else the default chain). */
export type IdentityOptions = { credential?: TokenCredential; clientId?: string };

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

function credentialFor(o: IdentityOptions): TokenCredential {
  return o.credential ?? (o.clientId ? new ManagedIdentityCredential({ clientId: o.clientId }) : new DefaultAzureCredential());
}

/** The agent's receiver. It owns its SDK client and closes it on close(). */
export function createDispatchReceiver(options: DispatchReceiverOptions): DispatchReceiver {
  const machineId = machineIdSchema.parse(options.machineId);
  if (options.transport === 'storage-queue') {
    const service =
      'connectionString' in options
        ? QueueServiceClient.fromConnectionString(options.connectionString)
        : new QueueServiceClient(options.queueServiceUri, credentialFor(options));
    return new StorageQueueReceiver(service, options.queuePrefix, machineId, options.lockSeconds ?? 60, { simulateSessionBusyFile: options.simulateSessionBusyFile });
  }
  const clientOptions = { retryOptions: RECEIVER_RETRY_OPTIONS };
  const client =
    'connectionString' in options
      ? new ServiceBusClient(options.connectionString, clientOptions)
      : new ServiceBusClient(options.fullyQualifiedNamespace, credentialFor(options), clientOptions);
  return new ServiceBusDispatchReceiver(client, options.queue, machineId, { ownsClient: true, autoRenewMs: options.autoRenewMs, warn: options.warn });
}

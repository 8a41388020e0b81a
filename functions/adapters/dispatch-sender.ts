// The app's dispatch sender: dispatch/ takes plain options; this builds them from the app's settings and SDK clients
// and keeps one sender per set of clients (the tick and the health probe share it).
import { createDispatchSender, type DispatchSender, type DispatchSenderOptions } from '../../dispatch/index.js';
import type { AzureClients } from './azure-clients.js';

/** The transport options for these clients' settings (DISPATCH_TRANSPORT). */
export function dispatchSenderOptions(clients: AzureClients): DispatchSenderOptions {
  const cfg = clients.config;
  switch (cfg.transport) {
    case 'storage-queue':
      return { transport: 'storage-queue', queueService: clients.queueService, queuePrefix: cfg.storageQueuePrefix };
    case 'servicebus':
      return { transport: 'servicebus', serviceBusClient: () => clients.serviceBusClient, queue: cfg.serviceBusQueue };
  }
}

const senders = new WeakMap<AzureClients, DispatchSender>();

/** The one dispatch sender of a set of SDK clients, built on first use. */
export function dispatchSenderFor(clients: AzureClients): DispatchSender {
  let sender = senders.get(clients);
  if (!sender) {
    sender = createDispatchSender(dispatchSenderOptions(clients));
    senders.set(clients, sender);
  }
  return sender;
}

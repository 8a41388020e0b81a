import type { AzureClients } from '../functions/adapters/azure-clients.js';
import { StorageQueueSender } from './storage-queue.js';
import type { DispatchSender } from './types.js';

export type { DispatchReceiver, DispatchSender, ReceivedDispatch } from './types.js';

/** The sender for the configured transport (DISPATCH_TRANSPORT). */
export function createDispatchSender(clients: AzureClients): DispatchSender {
  const cfg = clients.config;
  switch (cfg.transport) {
    case 'storage-queue':
      return new StorageQueueSender(clients.queueService, cfg.storageQueuePrefix);
    case 'servicebus':
      throw new Error('servicebus transport: not wired yet');
  }
}

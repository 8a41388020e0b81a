// What the LoRA library needs from the outside world, as one plain object. Trigger files build it from the
// process-wide Services; tests build it from their own settings and call the core directly, with a clock they control.
import type { Container } from '@azure/cosmos';
import type { BlobServiceClient } from '@azure/storage-blob';
import type { AzureClients } from '../../adapters/azure-clients.js';
import type { SasPermission } from '../../adapters/blob-sas.js';
import type { Config } from '../config.js';
import { rootLogger, type Logger } from '../logger.js';
import type { Services } from '../services.js';

export interface LoraDeps {
  config: Config;
  /** Cosmos `loras` container, partition key /owner_id. */
  loras: Container;
  blobService: BlobServiceClient;
  blobSas: { url(container: string, blobName: string, permission: SasPermission, expiresOn: Date): Promise<string> };
  log: Logger;
  /** ms since the epoch; injectable so tests can move time. */
  now(): number;
}

export function loraDepsFromClients(clients: AzureClients, overrides: Partial<LoraDeps> = {}): LoraDeps {
  return {
    config: clients.config,
    loras: clients.cosmosContainers.loras,
    blobService: clients.blobService,
    blobSas: clients.blobSas,
    log: rootLogger.child({ component: 'loras' }),
    now: Date.now,
    ...overrides,
  };
}

export function loraDeps(services: Services): LoraDeps {
  return loraDepsFromClients(services.clients, { log: services.log.child({ component: 'loras' }) });
}

// What the job, machine and tick modules need from the outside world, as one plain object. Trigger files build it from
// the process-wide Services; tests build it from their own settings and call the core functions directly (no timer, no
// HTTP), with a clock they control when they need one.
import type { Container } from '@azure/cosmos';
import type { BlobServiceClient } from '@azure/storage-blob';
import type { Config } from './config.js';
import type { Logger } from './logger.js';
import type { Services } from './services.js';
import type { AzureClients } from '../adapters/azure-clients.js';
import type { SasPermission } from '../adapters/blob-sas.js';
import { dispatchSenderFor } from '../adapters/dispatch-sender.js';
import type { DispatchSender } from '../../dispatch/types.js';
import { rootLogger } from './logger.js';

export interface CoreDeps {
  config: Config;
  jobs: Container;
  machines: Container;
  events: Container;
  loras: Container;
  blobSas: { url(container: string, blobName: string, permission: SasPermission, expiresOn: Date): Promise<string> };
  /** Job outputs: to check an uploaded output exists with the size reported before recording it. */
  blobService: BlobServiceClient;
  sender: DispatchSender;
  log: Logger;
  /** ms since the epoch; injectable so tests can move time. */
  now(): number;
}

/** Core dependencies over a set of SDK clients (one dispatch sender per clients object). */
export function depsFromClients(clients: AzureClients, overrides: Partial<CoreDeps> = {}): CoreDeps {
  const sender = dispatchSenderFor(clients);
  const c = clients.cosmosContainers;
  return {
    config: clients.config,
    jobs: c.jobs,
    machines: c.machines,
    events: c.events,
    loras: c.loras,
    blobSas: clients.blobSas,
    blobService: clients.blobService,
    sender,
    log: rootLogger,
    now: Date.now,
    ...overrides,
  };
}

export function coreDeps(services: Services): CoreDeps {
  return depsFromClients(services.clients, { log: services.log });
}

// Lazily built, process-wide SDK clients. One credential, one client per service: Functions instances reuse them
// across invocations. Identity in Azure; connection strings/emulator keys only in local mode (see config.ts).
import { readFileSync } from 'node:fs';
import { Agent as HttpsAgent } from 'node:https';
import { CosmosClient, type Container, type Database } from '@azure/cosmos';
import { ServiceBusClient } from '@azure/service-bus';
import { BlobServiceClient } from '@azure/storage-blob';
import { QueueServiceClient } from '@azure/storage-queue';
import { getCredential } from '../../dispatch/credential.js';
import { SENDER_RETRY_OPTIONS } from '../../dispatch/index.js';
import type { Config } from '../core/config.js';
import { BlobSas } from './blob-sas.js';

export interface CosmosContainers {
  database: Database;
  loras: Container;
  jobs: Container;
  machines: Container;
  events: Container;
}

/** Container ids and partition keys: the Bicep in infra/ creates the same. */
export const COSMOS_CONTAINERS = {
  loras: '/owner_id',
  jobs: '/tenant_id',
  machines: '/machine_id',
  events: '/job_id',
} as const;

export class AzureClients {
  private blob?: BlobServiceClient;
  private queue?: QueueServiceClient;
  private cosmos?: CosmosClient;
  private containers?: CosmosContainers;
  private serviceBus?: ServiceBusClient;
  private sas?: BlobSas;

  constructor(readonly config: Config) {}

  get blobService(): BlobServiceClient {
    if (!this.blob) {
      const s = this.config.storage;
      this.blob =
        s.kind === 'connectionString'
          ? BlobServiceClient.fromConnectionString(s.connectionString)
          : new BlobServiceClient(s.blobServiceUri, getCredential(s.clientId));
    }
    return this.blob;
  }

  get blobSas(): BlobSas {
    this.sas ??= new BlobSas(this.blobService);
    return this.sas;
  }

  get queueService(): QueueServiceClient {
    if (!this.queue) {
      const s = this.config.storage;
      this.queue =
        s.kind === 'connectionString'
          ? QueueServiceClient.fromConnectionString(s.connectionString)
          : new QueueServiceClient(requireQueueUri(s.queueServiceUri), getCredential(s.clientId));
    }
    return this.queue;
  }

  get cosmosClient(): CosmosClient {
    if (!this.cosmos) {
      const c = this.config.cosmos;
      this.cosmos =
        c.kind === 'connectionString'
          ? new CosmosClient({
              endpoint: c.endpoint,
              key: c.key,
              // The local emulator serves a self-signed certificate: trust exactly that certificate, for this client only.
              agent: new HttpsAgent({
                ca: c.emulatorCertPath ? readFileSync(c.emulatorCertPath, 'utf8') : undefined,
                keepAlive: true,
                // Idle sockets close here after 60 s, before the local emulator's 120 s (local/cosmos-server.ts).
                timeout: 60_000,
              }),
              connectionPolicy: { enableEndpointDiscovery: false },
            })
          : new CosmosClient({ endpoint: c.endpoint, aadCredentials: getCredential(c.clientId) });
    }
    return this.cosmos;
  }

  get cosmosContainers(): CosmosContainers {
    if (!this.containers) {
      const database = this.cosmosClient.database(this.config.cosmosDatabase);
      this.containers = {
        database,
        loras: database.container('loras'),
        jobs: database.container('jobs'),
        machines: database.container('machines'),
        events: database.container('events'),
      };
    }
    return this.containers;
  }

  /** The app only sends dispatches with it: short retries (each send is also bounded by dispatch's abort signal). */
  get serviceBusClient(): ServiceBusClient {
    if (!this.serviceBus) {
      const sb = this.config.serviceBus;
      if (!sb) throw new Error('Service Bus is not configured (set ServiceBus__fullyQualifiedNamespace)');
      this.serviceBus =
        sb.kind === 'connectionString'
          ? new ServiceBusClient(sb.connectionString, { retryOptions: SENDER_RETRY_OPTIONS })
          : new ServiceBusClient(sb.fullyQualifiedNamespace, getCredential(sb.clientId), { retryOptions: SENDER_RETRY_OPTIONS });
    }
    return this.serviceBus;
  }

  async close(): Promise<void> {
    await this.serviceBus?.close();
    this.cosmos?.dispose();
  }
}

/**
 * Creates what Bicep creates in Azure (containers, database): used by the local stack and tests, idempotent.
 */
export async function ensureLocalResources(clients: AzureClients): Promise<void> {
  const cfg = clients.config;
  for (const name of [cfg.userLoraContainer, cfg.sharedLoraContainer, cfg.outputContainer]) {
    await clients.blobService.getContainerClient(name).createIfNotExists();
  }
  const { database } = await clients.cosmosClient.databases.createIfNotExists({ id: cfg.cosmosDatabase });
  for (const [id, path] of Object.entries(COSMOS_CONTAINERS)) {
    // As in infra/app/cosmos.bicep: -1 turns per-item ttl on (expiring nothing by itself), `events` expire after 7
    // days. cosmosdb-server stores but does not enforce either (see functions/core/loras/retention.ts).
    await database.containers.createIfNotExists({ id, partitionKey: { paths: [path] }, defaultTtl: id === 'events' ? 604800 : -1 });
  }
}

export type { Config };

function requireQueueUri(uri: string | undefined): string {
  // loadConfig requires it for the storage-queue transport, the only user of queues.
  if (!uri) throw new Error(`Missing app setting LoraStorage__queueServiceUri (queues are used only by DISPATCH_TRANSPORT=storage-queue).`);
  return uri;
}

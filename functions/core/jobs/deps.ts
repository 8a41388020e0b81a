// What the job, machine and tick modules need from the outside world, as one plain object. Trigger files build it from
// the process-wide Services; tests build it from their own settings and call the core functions directly (no timer, no
// HTTP), with a clock they control when they need one.
import type { Container } from '@azure/cosmos';
import type { BlobServiceClient } from '@azure/storage-blob';
import type { Config } from '../config.js';
import type { Logger } from '../logger.js';
import type { Services } from '../services.js';
import type { AzureClients } from '../../adapters/azure-clients.js';
import type { SasPermission } from '../../adapters/blob-sas.js';
import { dispatchSenderFor } from '../../../dispatch/index.js';
import type { DispatchSender } from '../../../dispatch/types.js';
import { rootLogger } from '../logger.js';

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

/** The HTTP status of a Cosmos SDK error (404, 409, 412, 429...), or undefined. */
export function cosmosStatus(err: unknown): number | undefined {
  const code = (err as { code?: unknown; statusCode?: unknown } | null)?.code ?? (err as { statusCode?: unknown } | null)?.statusCode;
  return typeof code === 'number' ? code : undefined;
}

export const isPreconditionFailed = (err: unknown): boolean => cosmosStatus(err) === 412;
export const isConflict = (err: unknown): boolean => cosmosStatus(err) === 409;
export const isNotFound = (err: unknown): boolean => cosmosStatus(err) === 404;

/** Runs `fn` over `items` with at most `limit` in flight; results in input order. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    for (;;) {
      const i = next++;
      if (i >= items.length) return;
      out[i] = await fn(items[i]!, i);
    }
  });
  await Promise.all(workers);
  return out;
}

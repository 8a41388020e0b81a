// Everything a handler needs, built once per process and lazily (nothing connects until first use).
import { AzureClients } from '../adapters/azure-clients.js';
import { Authenticator } from './auth.js';
import { getConfig, type Config } from './config.js';
import { rootLogger, type Logger } from './logger.js';

export interface Services {
  config: Config;
  clients: AzureClients;
  auth: Authenticator;
  log: Logger;
}

let clients: AzureClients | undefined;
/** The process-wide SDK clients for the process-wide config. */
export function getClients(): AzureClients {
  clients ??= new AzureClients(getConfig());
  return clients;
}

let services: Services | undefined;
export function getServices(): Services {
  if (!services) {
    const config = getConfig();
    services = { config, clients: getClients(), auth: new Authenticator(config.auth), log: rootLogger };
  }
  return services;
}

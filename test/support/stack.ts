// Per-test-file helpers over the shared emulators: settings, a dev Functions host child process, tokens, API clients.
import { randomBytes } from 'node:crypto';
import { inject } from 'vitest';
import { ApiClient } from '../../api-client/index.js';
import { issueDevToken } from '../../functions/core/auth.js';
import { AzureClients } from '../../functions/adapters/azure-clients.js';
import { loadConfig } from '../../functions/core/config.js';
import { provisionLocal, startDevHostProcess, type DevHostProcess } from '../../local/stack.js';
import { sampleSettings } from '../../local/settings.js';

/** A fresh database/containers/queue prefix per test file keeps files independent on shared emulators. */
export function testSettings(overrides: Record<string, string> = {}): Record<string, string> {
  const emu = inject('emulators');
  const suffix = randomBytes(3).toString('hex');
  return {
    ...sampleSettings(),
    LoraStorage: emu.storageConnection,
    AzureWebJobsStorage: emu.storageConnection,
    CosmosDb: emu.cosmosConnection,
    COSMOS_EMULATOR_CERT_PATH: emu.cosmosCertPath,
    COSMOS_DATABASE: `test-${suffix}`,
    USER_LORA_CONTAINER: `user-loras-${suffix}`,
    SHARED_LORA_CONTAINER: `shared-loras-${suffix}`,
    OUTPUT_CONTAINER: `job-outputs-${suffix}`,
    DISPATCH_QUEUE_PREFIX: `m${suffix}-`,
    ...overrides,
  };
}

export interface TestHost {
  settings: Record<string, string>;
  host: DevHostProcess;
  apiUrl: string;
  /** An API client with no token. */
  anonymous: ApiClient;
  /** An API client carrying a dev token for this subject/role. */
  as(subject: string, role?: 'user' | 'admin'): Promise<ApiClient>;
  /** SDK clients over the same settings, for assertions on stored state. */
  clients: AzureClients;
  stop(): Promise<void>;
}

export async function startTestHost(
  overrides: Record<string, string> = {},
  opts: { timers?: boolean } = {},
): Promise<TestHost> {
  const settings = testSettings(overrides);
  await provisionLocal(settings);
  const host = await startDevHostProcess(settings, { timers: opts.timers, logLevel: process.env.LOG_LEVEL ?? 'warn' });
  const apiUrl = `${host.url}/api`;
  const clients = new AzureClients(loadConfig(settings));
  return {
    settings,
    host,
    apiUrl,
    anonymous: new ApiClient({ baseUrl: apiUrl }),
    as: async (subject, role = 'user') =>
      new ApiClient({ baseUrl: apiUrl, token: await issueDevToken(settings.AUTH_DEV_SECRET!, subject, role) }),
    clients,
    stop: async () => {
      await host.stop();
      await clients.close();
    },
  };
}

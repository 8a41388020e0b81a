// Local app settings: local.settings.sample.json (the settings `func start` would use against the default emulator
// ports), with endpoints swapped for the ones this run actually started.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { AzuriteHandle, CosmosHandle } from './emulators.js';

export const repoRoot = (): string => process.env.LORA_ROUTER_ROOT ?? process.cwd();

export function sampleSettings(root = repoRoot()): Record<string, string> {
  const sample = JSON.parse(readFileSync(join(root, 'local.settings.sample.json'), 'utf8')) as { Values: Record<string, string> };
  return { ...sample.Values };
}

export function stackSettings(
  azurite: Pick<AzuriteHandle, 'connectionString'>,
  cosmos: Pick<CosmosHandle, 'connectionString' | 'certPath'>,
  overrides: Record<string, string> = {},
  root = repoRoot(),
): Record<string, string> {
  return {
    ...sampleSettings(root),
    LoraStorage: azurite.connectionString,
    AzureWebJobsStorage: azurite.connectionString,
    CosmosDb: cosmos.connectionString,
    COSMOS_EMULATOR_CERT_PATH: cosmos.certPath,
    ...overrides,
  };
}

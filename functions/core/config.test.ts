import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { AZURE_PLATFORM_VARIABLES, loadConfig, PUBLIC_SAMPLE_SECRETS } from './config.js';

const sample = (JSON.parse(readFileSync(new URL('../../local.settings.sample.json', import.meta.url), 'utf8')) as { Values: Record<string, string> }).Values;

const azure: Record<string, string> = {
  LORA_ROUTER_MODE: 'azure',
  LoraStorage__blobServiceUri: 'https://acct.blob.core.windows.net',
  LoraStorage__queueServiceUri: 'https://acct.queue.core.windows.net',
  CosmosDb__accountEndpoint: 'https://acct.documents.azure.com:443/',
  ServiceBus__fullyQualifiedNamespace: 'ns.servicebus.windows.net',
  AUTH_ISSUER: 'https://login.microsoftonline.com/t/v2.0',
  AUTH_AUDIENCE: 'api://lora-router',
  AUTH_JWKS_URI: 'https://login.microsoftonline.com/t/discovery/v2.0/keys',
  MACHINE_TOKEN_SECRET: 'k'.repeat(48),
};

describe('mode and secrets', () => {
  it('loads the sample local settings with two distinct secrets', () => {
    const c = loadConfig(sample);
    expect(c.auth.mode).toBe('local');
    expect(c.auth.mode === 'local' && c.auth.devSecret !== c.auth.machineTokenSecret).toBe(true);
    // The sample's secrets are the ones refused outside local mode.
    expect(PUBLIC_SAMPLE_SECRETS).toContain(sample.AUTH_DEV_SECRET);
    expect(PUBLIC_SAMPLE_SECRETS).toContain(sample.MACHINE_TOKEN_SECRET);
  });

  it.each(AZURE_PLATFORM_VARIABLES.map((v) => [v]))('refuses local mode when the platform sets %s', (name) => {
    expect(() => loadConfig({ ...sample, [name]: name === 'WEBSITE_SKU' ? 'FlexConsumption' : 'x1' })).toThrow(new RegExp(`local mode is refused in Azure.*${name}`));
  });

  it('never falls back from the machine secret to the dev secret', () => {
    const { MACHINE_TOKEN_SECRET: _m, ...withoutMachineSecret } = sample;
    expect(() => loadConfig(withoutMachineSecret)).toThrow(/Missing app setting MACHINE_TOKEN_SECRET/);
    expect(() => loadConfig({ ...sample, MACHINE_TOKEN_SECRET: sample.AUTH_DEV_SECRET! })).toThrow(/must differ/);
  });

  it('refuses a dev secret outside local mode', () => {
    expect(loadConfig(azure).auth.mode).toBe('entra');
    expect(() => loadConfig({ ...azure, AUTH_DEV_SECRET: sample.AUTH_DEV_SECRET! })).toThrow(/AUTH_DEV_SECRET is set outside local mode/);
    expect(() => loadConfig({ ...azure, MACHINE_TOKEN_SECRET: sample.MACHINE_TOKEN_SECRET! })).toThrow(/public sample value/);
    expect(() => loadConfig({ ...azure, MACHINE_TOKEN_SECRET: sample.AUTH_DEV_SECRET! })).toThrow(/public sample value/);
  });
});

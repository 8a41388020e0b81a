// Starts the real emulators once per test run (free loopback ports, a throwaway state dir) and stops them by pid.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { startEmulators, type Emulators } from '../../local/stack.js';

declare module 'vitest' {
  export interface ProvidedContext {
    emulators: { storageConnection: string; cosmosConnection: string; cosmosCertPath: string; blobEndpoint: string; stateDir: string };
  }
}

let emulators: Emulators | undefined;
let stateDir: string | undefined;

export async function setup(project: TestProject): Promise<void> {
  stateDir = mkdtempSync(join(tmpdir(), 'lora-router-test-'));
  emulators = await startEmulators({ stateDir, freePorts: true });
  project.provide('emulators', {
    storageConnection: emulators.azurite.connectionString,
    cosmosConnection: emulators.cosmos.connectionString,
    cosmosCertPath: emulators.cosmos.certPath,
    blobEndpoint: emulators.azurite.blobEndpoint,
    stateDir,
  });
}

export async function teardown(): Promise<void> {
  await emulators?.stop();
  if (stateDir) rmSync(stateDir, { recursive: true, force: true });
}

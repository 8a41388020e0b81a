// Brings up the local system: Azurite, cosmosdb-server, the resources Bicep would create, and the dev Functions
// host as a child process. Used by `npm start` and by the integration tests.
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { AzureClients, ensureLocalResources } from '../functions/adapters/azure-clients.js';
import { loadConfig } from '../functions/core/config.js';
import { allowBrowserUploads } from './blob-cors.js';
import { startAzurite, startCosmos, type AzuriteHandle, type CosmosHandle } from './emulators.js';
import { EXIT_WITH_PARENT, freePort, isPortFree, startProcess, type Started } from './processes.js';
import { repoRoot, stackSettings } from './settings.js';

export interface Emulators {
  azurite: AzuriteHandle;
  cosmos: CosmosHandle;
  stop(): Promise<void>;
}

export const DEFAULT_PORTS = { api: 7071, blob: 10000, queue: 10001, cosmos: 8081 } as const;

export async function startEmulators(opts: { stateDir: string; freePorts: boolean; inMemory?: boolean }): Promise<Emulators> {
  const ports = opts.freePorts ? { blob: 0, queue: 0, cosmos: 0 } : DEFAULT_PORTS;
  if (!opts.freePorts) await assertPortsFree([DEFAULT_PORTS.blob, DEFAULT_PORTS.queue, DEFAULT_PORTS.cosmos]);
  const [az, co] = await Promise.allSettled([
    startAzurite({ location: join(opts.stateDir, 'azurite'), blobPort: ports.blob, queuePort: ports.queue, inMemory: opts.inMemory }),
    startCosmos({ certDir: join(opts.stateDir, 'certs'), port: ports.cosmos }),
  ]);
  if (az.status === 'rejected' || co.status === 'rejected') {
    // One failed: stop the one that started, so nothing is left running.
    await Promise.allSettled([az, co].map((r) => (r.status === 'fulfilled' ? r.value.stop() : undefined)));
    throw az.status === 'rejected' ? az.reason : (co as PromiseRejectedResult).reason;
  }
  const [azurite, cosmos] = [az.value, co.value];
  return { azurite, cosmos, stop: async () => void (await Promise.all([azurite.stop(), cosmos.stop()])) };
}

async function assertPortsFree(ports: number[]): Promise<void> {
  for (const port of ports) {
    if (!(await isPortFree(port))) {
      throw new Error(`port ${port} is already in use (another stack running?). Stop it, or run with --free-ports.`);
    }
  }
}

/** Creates containers/databases/queues exactly as Bicep does in Azure. Idempotent. */
export async function provisionLocal(settings: Record<string, string>): Promise<void> {
  const clients = new AzureClients(loadConfig(settings));
  try {
    await ensureLocalResources(clients);
    await allowBrowserUploads(clients.blobService);
  } finally {
    await clients.close();
  }
}

export interface DevHostProcess extends Started {
  url: string;
  port: number;
  /** The key /admin/functions/* needs in `x-functions-key`. */
  adminKey: string;
  output(): string;
}

/** Starts the dev Functions host from dist/ as a child process and waits until it listens. */
export async function startDevHostProcess(
  settings: Record<string, string>,
  opts: { port?: number; timers?: boolean; logLevel?: string; root?: string; /** Serve this built app folder instead of root's dist/. */ appRoot?: string } = {},
): Promise<DevHostProcess> {
  const root = opts.root ?? repoRoot();
  const port = opts.port || (await freePort());
  const adminKey = settings.DEV_HOST_ADMIN_KEY ?? randomBytes(24).toString('base64url');
  const proc = startProcess('dev-host', process.execPath, [...EXIT_WITH_PARENT, '--enable-source-maps', join(root, 'dist/local/dev-host-main.js')], {
    cwd: opts.appRoot ?? root, // the Functions host runs in the app folder (/home/site/wwwroot)
    env: {
      ...process.env,
      ...settings,
      LORA_ROUTER_ROOT: root,
      DEV_HOST_APP_ROOT: opts.appRoot ?? root,
      DEV_HOST_PORT: String(port),
      DEV_HOST_ADMIN_KEY: adminKey,
      DEV_HOST_TIMERS: opts.timers === false ? 'off' : 'on',
      LOG_LEVEL: opts.logLevel ?? process.env.LOG_LEVEL ?? 'info',
    },
  });
  let out = '';
  const keep = (d: Buffer) => {
    out = (out + d.toString()).slice(-200_000);
  };
  proc.child.stderr?.on('data', keep);
  const url = await new Promise<string>((resolve, reject) => {
    let buf = '';
    proc.child.stdout?.on('data', (d: Buffer) => {
      keep(d);
      buf += d.toString();
      const m = /\{"event":"listening","url":"([^"]+)"/.exec(buf);
      if (m) resolve(m[1]!);
    });
    void proc.exited.then((code) => reject(new Error(`dev host exited with ${code}:\n${out.slice(-3000)}`)));
    setTimeout(() => reject(new Error(`dev host did not start within 60 s:\n${out.slice(-3000)}`)), 60_000).unref();
  });
  return { ...proc, url, port, adminKey, output: () => out };
}

export interface Stack {
  apiUrl: string;
  settings: Record<string, string>;
  emulators: Emulators;
  host: DevHostProcess;
  stop(): Promise<void>;
}

export async function startStack(opts: {
  stateDir?: string;
  freePorts?: boolean;
  apiPort?: number;
  settings?: Record<string, string>;
  timers?: boolean;
}): Promise<Stack> {
  const stateDir = opts.stateDir ?? join(repoRoot(), '.local');
  mkdirSync(stateDir, { recursive: true });
  const freePorts = opts.freePorts ?? false;
  const apiPort = opts.apiPort ?? (freePorts ? 0 : DEFAULT_PORTS.api);
  if (apiPort) await assertPortsFree([apiPort]);
  const emulators = await startEmulators({ stateDir, freePorts });
  try {
    const settings = stackSettings(emulators.azurite, emulators.cosmos, opts.settings);
    await provisionLocal(settings);
    const host = await startDevHostProcess(settings, { port: apiPort, timers: opts.timers });
    return {
      apiUrl: `${host.url}/api`,
      settings,
      emulators,
      host,
      stop: async () => {
        await host.stop();
        await emulators.stop();
      },
    };
  } catch (err) {
    await emulators.stop();
    throw err;
  }
}

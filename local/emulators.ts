// Real local emulators from node_modules: Azurite (blob + queue) and @vercel/cosmosdb-server. Loopback only.
import { X509Certificate } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { generate } from 'selfsigned';
import { createRequire } from 'node:module';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { EXIT_WITH_PARENT, freePort, startProcess, waitForPort, type Started } from './processes.js';

const require = createRequire(import.meta.url);
const here = dirname(fileURLToPath(import.meta.url));

/** Azurite's documented development account (public, emulator-only). */
export const AZURITE_ACCOUNT = 'devstoreaccount1';
export const AZURITE_KEY = 'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';
/** The well-known Cosmos emulator key; cosmosdb-server accepts any key. */
export const COSMOS_EMULATOR_KEY = 'C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU9DE2nQ9nDuVGA/QemphqJhT7EjNs8NrVFA==';

export interface AzuriteHandle extends Started {
  blobPort: number;
  queuePort: number;
  blobEndpoint: string;
  queueEndpoint: string;
  connectionString: string;
}

export async function startAzurite(opts: { location: string; blobPort?: number; queuePort?: number; inMemory?: boolean }): Promise<AzuriteHandle> {
  const blobPort = opts.blobPort || (await freePort());
  const queuePort = opts.queuePort || (await freePort());
  const tablePort = await freePort();
  mkdirSync(opts.location, { recursive: true });
  const bin = join(dirname(require.resolve('azurite/package.json')), 'dist/src/azurite.js');
  const args = [
    ...EXIT_WITH_PARENT,
    bin,
    '--blobHost', '127.0.0.1', '--blobPort', String(blobPort),
    '--queueHost', '127.0.0.1', '--queuePort', String(queuePort),
    '--tableHost', '127.0.0.1', '--tablePort', String(tablePort),
    ...(opts.inMemory ? ['--inMemoryPersistence'] : ['--location', opts.location]),
    '--skipApiVersionCheck', '--loose', '--disableTelemetry', '--silent',
  ];
  const proc = startProcess('azurite', process.execPath, args, { cwd: opts.location });
  let stderr = '';
  proc.child.stderr?.on('data', (d) => (stderr += d));
  proc.child.stdout?.resume();
  try {
    await Promise.race([
      Promise.all([waitForPort(blobPort), waitForPort(queuePort)]),
      proc.exited.then((code) => {
        throw new Error(`azurite exited with ${code}: ${stderr.slice(-500)}`);
      }),
    ]);
  } catch (err) {
    await proc.stop();
    throw err;
  }
  const blobEndpoint = `http://127.0.0.1:${blobPort}/${AZURITE_ACCOUNT}`;
  const queueEndpoint = `http://127.0.0.1:${queuePort}/${AZURITE_ACCOUNT}`;
  return {
    ...proc,
    blobPort,
    queuePort,
    blobEndpoint,
    queueEndpoint,
    connectionString:
      `DefaultEndpointsProtocol=http;AccountName=${AZURITE_ACCOUNT};AccountKey=${AZURITE_KEY};` +
      `BlobEndpoint=${blobEndpoint};QueueEndpoint=${queueEndpoint};`,
  };
}

export interface CosmosHandle extends Started {
  port: number;
  endpoint: string;
  connectionString: string;
  certPath: string;
}

/**
 * The certificate bundled with cosmosdb-server has expired, so we make our own for 127.0.0.1/localhost once per
 * state directory (renewed when it nears expiry) and hand its path to our clients (COSMOS_EMULATOR_CERT_PATH).
 */
export async function ensureEmulatorCert(dir: string): Promise<{ certPath: string; keyPath: string }> {
  mkdirSync(dir, { recursive: true });
  const certPath = join(dir, 'cosmos-emulator-cert.pem');
  const keyPath = join(dir, 'cosmos-emulator-key.pem');
  if (existsSync(certPath) && existsSync(keyPath)) {
    const cert = new X509Certificate(readFileSync(certPath));
    if (new Date(cert.validTo).getTime() - Date.now() > 30 * 86_400_000) return { certPath, keyPath };
  }
  const pems = await generate([{ name: 'commonName', value: 'localhost' }], {
    keySize: 2048,
    algorithm: 'sha256',
    notAfterDate: new Date(Date.now() + 365 * 86_400_000),
    extensions: [
      { name: 'basicConstraints', cA: false },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true },
      { name: 'subjectAltName', altNames: [{ type: 2, value: 'localhost' }, { type: 7, ip: '127.0.0.1' }] },
    ],
  });
  writeFileSync(keyPath, pems.private, { mode: 0o600 });
  writeFileSync(certPath, pems.cert);
  return { certPath, keyPath };
}

export async function startCosmos(opts: { certDir: string; port?: number }): Promise<CosmosHandle> {
  const port = opts.port || (await freePort());
  const { certPath, keyPath } = await ensureEmulatorCert(opts.certDir);
  // Always the compiled script (tests import this module from source; `npm test` builds dist/ first).
  const script = join(here, basename(here) === 'local' && basename(dirname(here)) === 'dist' ? '' : '../dist/local', 'cosmos-server.js');
  const proc = startProcess('cosmosdb-server', process.execPath, [...EXIT_WITH_PARENT, script, String(port), certPath, keyPath]);
  let stderr = '';
  proc.child.stderr?.on('data', (d) => (stderr += d));
  proc.child.stdout?.resume();
  try {
    await Promise.race([
      waitForPort(port),
      proc.exited.then((code) => {
        throw new Error(`cosmosdb-server exited with ${code}: ${stderr.slice(-500)}`);
      }),
    ]);
  } catch (err) {
    await proc.stop();
    throw err;
  }
  const endpoint = `https://127.0.0.1:${port}/`;
  return {
    ...proc,
    port,
    endpoint,
    certPath,
    connectionString: `AccountEndpoint=${endpoint};AccountKey=${COSMOS_EMULATOR_KEY};`,
  };
}

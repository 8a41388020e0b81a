// `npm start`: the whole system on this machine — emulators, the Functions app on the dev host, a local GPU fleet.
// Ctrl-C stops everything it started (by pid) and leaves nothing listening.
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { ConfigError } from '../functions/core/config.js';
import { startFleet, type Fleet } from './fleet.js';
import { repoRoot } from './settings.js';
import { startStack, type Stack } from './stack.js';

const { values } = parseArgs({
  options: {
    agents: { type: 'string', default: '3' },
    budget: { type: 'string', default: '300MB' },
    'free-ports': { type: 'boolean', default: false },
    port: { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (values.help) {
  process.stdout.write(`usage: npm start -- [--agents N] [--budget 300MB] [--free-ports] [--port 7071]\n`);
  process.exit(0);
}

const agents = Number(values.agents);
if (!Number.isInteger(agents) || agents < 0 || agents > 32) {
  process.stderr.write('--agents must be an integer from 0 to 32\n');
  process.exit(2);
}

const root = repoRoot();
const stateDir = join(root, '.local');
const stackFile = join(stateDir, 'stack.json');
mkdirSync(stateDir, { recursive: true });

let stack: Stack | undefined;
let fleet: Fleet | undefined;
let stopping = false;

async function stop(code: number): Promise<never> {
  if (!stopping) {
    stopping = true;
    process.stdout.write('\nstopping…\n');
    await fleet?.stop();
    await stack?.stop();
    rmSync(stackFile, { force: true });
    process.stdout.write('stopped: nothing left running.\n');
  }
  process.exit(code);
}
process.on('SIGINT', () => void stop(0));
process.on('SIGTERM', () => void stop(0));

try {
  const t0 = Date.now();
  stack = await startStack({
    stateDir,
    freePorts: values['free-ports'],
    apiPort: values.port ? Number(values.port) : undefined,
  });
  fleet = await startFleet({ stack, count: agents, budget: values.budget, stateDir });
  const health = await fetch(`${stack.apiUrl}/health`).then((r) => r.json() as Promise<{ status: string }>);
  const info = {
    api_base_url: stack.apiUrl,
    openapi_url: `${stack.apiUrl}/openapi.json`,
    emulators: {
      blob: stack.emulators.azurite.blobEndpoint,
      queue: stack.emulators.azurite.queueEndpoint,
      cosmos: stack.emulators.cosmos.endpoint,
    },
    pids: {
      stack: process.pid,
      azurite: stack.emulators.azurite.pid,
      cosmos: stack.emulators.cosmos.pid,
      functions_host: stack.host.pid,
      agents: Object.fromEntries(fleet.agents.map((a) => [a.machineId, a.pid])),
    },
    agents: fleet.agents.map((a) => ({ machine_id: a.machineId, pool: a.pool, cache_dir: a.cacheDir, budget_bytes: a.budgetBytes })),
    started_at: new Date().toISOString(),
  };
  writeFileSync(stackFile, JSON.stringify(info, null, 2));
  const secs = ((Date.now() - t0) / 1000).toFixed(1);
  process.stdout.write(
    [
      '',
      `lora-router is up in ${secs}s — health: ${health.status}`,
      `  API           ${stack.apiUrl}   (OpenAPI: ${stack.apiUrl}/openapi.json)`,
      `  Azurite       ${stack.emulators.azurite.blobEndpoint}`,
      `  Cosmos        ${stack.emulators.cosmos.endpoint}`,
      `  agents        ${fleet.agents.map((a) => a.machineId).join(', ') || 'none'}`,
      `  stack file    .local/stack.json`,
      '',
      'What to do next (in another terminal):',
      '  npm run demo                                   # upload LoRAs as two users, stream jobs, print the hit rate',
      '  export LORA_ROUTER_TOKEN=$(npx lora-router dev-token alice)',
      '  npx lora-router upload my-lora.safetensors     # then: npx lora-router loras',
      '  npx lora-router submit --lora <flat_file_id>   # then: npx lora-router watch <job_id>',
      '  curl -s localhost:' + new URL(stack.apiUrl).port + '/api/health',
      '',
      'Ctrl-C stops everything.',
      '',
    ].join('\n'),
  );
} catch (err) {
  const message = err instanceof ConfigError ? `configuration error: ${err.message}` : (err as Error).message;
  process.stderr.write(`npm start failed: ${message}\n`);
  await stop(1);
}

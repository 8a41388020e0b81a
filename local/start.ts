// `npm start`: the whole system on this machine — emulators, the Functions app on the dev host, a local GPU fleet.
// Ctrl-C stops everything it started (by pid) and leaves nothing listening.
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { issueDevToken } from '../functions/core/auth.js';
import { ConfigError } from '../functions/core/config.js';
import { parseBytes } from '../worker-agent/src/config.js';
import { agentEnv, DEFAULT_FLEET_BUDGET, startFleet, type Fleet } from './agents.js';
import { repoRoot } from './settings.js';
import { startStack, type Stack } from './stack.js';

const { values } = parseArgs({
  options: {
    agents: { type: 'string', default: '3' },
    budget: { type: 'string', default: DEFAULT_FLEET_BUDGET },
    slots: { type: 'string', default: '1' },
    executor: { type: 'string', default: 'comfyui' },
    'free-ports': { type: 'boolean', default: false },
    port: { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (values.help) {
  process.stdout.write(
    [
      'usage: npm start -- [--agents N] [--budget SIZE] [--slots N] [--free-ports] [--port 7071]',
      '  --agents N     local GPU agents to start (default 3; 0 for none)',
      `  --budget SIZE  LoRA cache budget per agent, e.g. 96MB or 1GB (default ${DEFAULT_FLEET_BUDGET}: small, so eviction shows)`,
      '  --slots N      jobs each agent runs at once (default 1)',
      '  --executor E   comfyui (default: each agent next to a ComfyUI protocol double) or command (the bundled job script)',
      '  --free-ports   use free loopback ports instead of 7071/10000/10001/8081',
      '  --port P       API port (default 7071)',
      '',
    ].join('\n'),
  );
  process.exit(0);
}

if (values.executor !== 'comfyui' && values.executor !== 'command') {
  process.stderr.write('--executor must be comfyui or command\n');
  process.exit(2);
}
const executor = values.executor;
const agents = Number(values.agents);
if (!Number.isInteger(agents) || agents < 0 || agents > 32) {
  process.stderr.write('--agents must be an integer from 0 to 32\n');
  process.exit(2);
}
if (parseBytes(values.budget) === undefined) {
  process.stderr.write(`--budget ${JSON.stringify(values.budget)}: expected bytes or a size such as 96MB or 1GB\n`);
  process.exit(2);
}
const slots = Number(values.slots);
if (!Number.isInteger(slots) || slots < 1 || slots > 16) {
  process.stderr.write('--slots must be an integer from 1 to 16\n');
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
  fleet = await startFleet({ stack, count: agents, budget: values.budget, stateDir, slots, executor });
  const { MACHINE_ID: _m, MACHINE_TOKEN_FILE: _t, CACHE_DIR: _c, STATE_DIR: _s, ...extraAgentSettings } = agentEnv({
    machineId: 'extra',
    token: '',
    pool: 'standard',
    slots: 1,
    apiUrl: stack.apiUrl,
    storageConnection: stack.settings.LoraStorage!,
    queuePrefix: stack.settings.DISPATCH_QUEUE_PREFIX ?? 'machine-',
    dir: stateDir,
    budgetBytes: parseBytes(values.budget) ?? 96 * 1024 * 1024,
  });
  const agentEnvFile = join(stateDir, 'agent.env');
  writeFileSync(agentEnvFile, Object.entries(extraAgentSettings).map(([k, v]) => `${k}='${v}'`).join('\n') + '\n');
  const extraAgentCommand =
    'M=local-gpu-extra; mkdir -p .local/$M && LORA_ROUTER_TOKEN=$(node bin/lora-router.js dev-token ops --role admin) node bin/lora-router.js machines register $M > .local/$M/machine-token && MACHINE_ID=$M MACHINE_TOKEN_FILE=.local/$M/machine-token CACHE_DIR=.local/$M/cache node bin/lora-router.js agent --env-file .local/agent.env';
  const health = await fetch(`${stack.apiUrl}/health`).then((r) => r.json() as Promise<{ status: string }>);
  const info = {
    api_base_url: stack.apiUrl,
    openapi_url: `${stack.apiUrl}/openapi.json`,
    // POST <host>/admin/functions/<name> with this in x-functions-key runs a timer or Event Grid function now.
    admin_key: stack.host.adminKey,
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
    agents: fleet.agents.map((a) => ({
      machine_id: a.machineId,
      pool: a.pool,
      pid: a.pid,
      slots,
      cache_dir: a.cacheDir,
      budget_bytes: a.budgetBytes,
      executor: a.executor,
      comfyui_url: a.comfyui?.url ?? null,
      log_file: join(a.cacheDir, '..', 'agent.log'),
    })),
    // Everything an extra local agent needs but its own identity (MACHINE_ID, token, CACHE_DIR): `agent_env_file`
    // holds the same as KEY=VALUE for `lora-router agent --env-file` (the Azurite key is the public emulator key).
    agent_settings: extraAgentSettings,
    agent_env_file: agentEnvFile,
    extra_agent_command: extraAgentCommand,
    started_at: new Date().toISOString(),
  };
  writeFileSync(stackFile, JSON.stringify(info, null, 2));
  // Ready-to-click web app links: the token rides in the URL fragment (never sent to the server), and the page moves
  // it into this tab's sessionStorage.
  const appUrl = `${stack.apiUrl}/app/`;
  const devSecret = stack.settings.AUTH_DEV_SECRET!;
  const aliceUrl = `${appUrl}#token=${await issueDevToken(devSecret, 'alice', 'user')}`;
  const opsUrl = `${appUrl}#token=${await issueDevToken(devSecret, 'ops', 'admin')}`;
  const secs = ((Date.now() - t0) / 1000).toFixed(1);
  process.stdout.write(
    [
      '',
      `lora-router is up in ${secs}s — health: ${health.status}`,
      `  API           ${stack.apiUrl}   (OpenAPI: ${stack.apiUrl}/openapi.json)`,
      `  Web app       ${aliceUrl}   (as alice)`,
      `  Fleet (admin) ${opsUrl}   (as ops)`,
      `  Azurite       ${stack.emulators.azurite.blobEndpoint}`,
      `  Cosmos        ${stack.emulators.cosmos.endpoint}`,
      `  agents        ${fleet.agents.length ? `${fleet.agents.length} × ${slots} slot(s), cache budget ${values.budget} each` : 'none (--agents 0)'}`,
      ...fleet.agents.map((a) => `    ${a.machineId.padEnd(12)} pid ${String(a.pid).padEnd(8)} cache .local/fleet/${a.machineId}/cache   log .local/fleet/${a.machineId}/agent.log`),
      ...(executor === 'comfyui'
        ? [`  executor      comfyui: each agent drives its own ComfyUI protocol double (a test double of ComfyUI's API, not ComfyUI), ${fleet.agents.map((a) => a.comfyui?.url).join(', ')}`]
        : ['  executor      command (the bundled open-loras job script)']),
      `  stack file    .local/stack.json (agent settings for an extra agent: .local/agent.env)`,
      '',
      'What to do next (in another terminal):',
      '  npm run demo                                   # upload LoRAs as two users, stream jobs, print the hit rate',
      '  export LORA_ROUTER_TOKEN=$(npx lora-router dev-token alice)',
      '  npx lora-router upload my-lora.safetensors     # then: npx lora-router loras',
      '  npx lora-router submit --lora <flat_file_id>   # then: npx lora-router watch <job_id>',
      '  npx lora-router outputs <job_id> --download ./out   # the images a job made',
      '  curl -s localhost:' + new URL(stack.apiUrl).port + '/api/health',
      '  LORA_ROUTER_TOKEN=$(npx lora-router dev-token ops --role admin) npx lora-router machines list   # the fleet',
      '  tail -f .local/fleet/local-gpu-1/agent.log     # one agent: claims, downloads, evictions, job output',
      '  # one more agent (registers local-gpu-extra and runs it in the foreground; Ctrl-C drains it):',
      `  ${extraAgentCommand}`,
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

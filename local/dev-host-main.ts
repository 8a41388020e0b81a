// Entry point of the local Functions host process. App settings come from the environment (the parent passes them).
// DEV_HOST_APP_ROOT serves another built Functions app folder (dist/functions/triggers + host.json), e.g. the deploy
// package assembled by test/deploy; by default, this repo.
import { join } from 'node:path';
import { getClients } from '../functions/core/services.js';
import { getConfig } from '../functions/core/config.js';
import { rootLogger } from '../functions/core/logger.js';
import { readRoutePrefix, startDevHost } from './dev-host.js';
import { repoRoot } from './settings.js';

const appRoot = process.env.DEV_HOST_APP_ROOT || repoRoot();
function requiredKey(): string {
  const key = process.env.DEV_HOST_ADMIN_KEY;
  if (!key || key.length < 16) throw new Error('DEV_HOST_ADMIN_KEY (at least 16 characters) must be set: /admin/functions/* needs it');
  return key;
}

const port = Number(process.env.DEV_HOST_PORT ?? 7071);
const config = getConfig(); // fail fast, naming the bad setting
const host = await startDevHost({
  port,
  triggersDir: join(appRoot, 'dist/functions/triggers'),
  routePrefix: readRoutePrefix(join(appRoot, 'host.json')),
  timers: process.env.DEV_HOST_TIMERS !== 'off',
  blobWatch: { service: getClients().blobService, containers: [config.userLoraContainer, config.sharedLoraContainer] },
  log: rootLogger.child({ component: 'dev-host' }),
  settings: process.env,
  adminKey: requiredKey(),
});
rootLogger.info({ url: host.url, http: host.registrations.http.length, timers: host.registrations.timers.map((t) => t.name), eventGrid: host.registrations.eventGrid.map((t) => t.name) }, 'dev host listening');
const triggersDir = join(appRoot, 'dist/functions/triggers');
process.stdout.write(`${JSON.stringify({ event: 'listening', url: host.url, triggers: triggersDir })}\n`);

let stopping = false;
const stop = async () => {
  if (stopping) return;
  stopping = true;
  await host.close();
  await getClients().close();
  process.exit(0);
};
process.on('SIGTERM', () => void stop());
process.on('SIGINT', () => void stop());

// Job intake under load: 10 000 submissions from 100 tenants at concurrency 50 against a local stack it starts itself
// (Azurite, cosmosdb-server, the dev Functions host; timers off so jobs stay pending and quotas bite), every 10th
// submission sent twice at once with the same Idempotency-Key. Prints the answer counts, the Cosmos count against the
// 201s, duplicates, p50/p95 and the host's peak RSS.
//   npm run bench:intake [-- --submissions 10000 --tenants 100 --concurrency 50]
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AzureClients } from '../functions/adapters/azure-clients.js';
import { loadConfig } from '../functions/core/config.js';
import { startStack } from '../local/stack.js';
import { runIntakeLoad } from '../testkit/intake-load.js';

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  const v = i >= 0 ? Number(process.argv[i + 1]) : NaN;
  return Number.isFinite(v) && v > 0 ? v : fallback;
}

const dir = mkdtempSync(join(tmpdir(), 'bench-intake-'));
const stack = await startStack({ stateDir: join(dir, 'state'), freePorts: true, timers: false, settings: { LOG_LEVEL: 'warn', TENANT_MAX_ACTIVE_JOBS: '100' } });
const clients = new AzureClients(loadConfig(stack.settings));
const pid = stack.host.child.pid!;
const hwm = () => Number(/^VmHWM:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN) / 1024;
try {
  const report = await runIntakeLoad({
    apiUrl: stack.apiUrl,
    devSecret: stack.settings.AUTH_DEV_SECRET!,
    jobs: clients.cosmosContainers.jobs,
    submissions: arg('submissions', 10_000),
    tenants: arg('tenants', 100),
    concurrency: arg('concurrency', 50),
    retriedShare: 0.1,
    onProgress: (done, sofar) => process.stderr.write(`${new Date().toISOString()} ${done} submitted ${JSON.stringify({ ...sofar, hostPeakRssMiB: Math.round(hwm()) })}\n`),
  });
  console.log(JSON.stringify({ ...report, hostPeakRssMiB: Math.round(hwm()) }, null, 2));
  // What the host logged at warn and above (LOG_LEVEL=warn), by message: timeouts, unhandled errors.
  const logged = new Map<string, number>();
  for (const line of stack.host.output().split('\n')) {
    const m = /"level":(\d+).*"msg":"([^"]*)"/.exec(line);
    if (m) logged.set(`level ${m[1]}: ${m[2]}`, (logged.get(`level ${m[1]}: ${m[2]}`) ?? 0) + 1);
  }
  const errs = stack.host.output().split('\n').filter((l) => l.includes('"level":50')).slice(-3);
  console.log('host log (last 200 kB) by message:', JSON.stringify(Object.fromEntries(logged)), ...errs.map((l) => `\n  ${l.slice(0, 600)}`));
  const ok = report.networkErrors === 0 && Object.keys(report.otherStatuses).length === 0 && report.duplicateKeys === 0 && report.jobsInCosmos === report.distinctCreated;
  if (!ok) process.exitCode = 1;
} finally {
  await clients.close();
  await stack.stop();
  rmSync(dir, { recursive: true, force: true });
}

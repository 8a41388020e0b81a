// 200 concurrent event streams, then 100 concurrent multipart uploads, against a local stack it starts itself
// (Azurite, cosmosdb-server, the dev Functions host; timers off so jobs stay pending and streams stay open). Prints
// answers by status, 5xx and network errors, and the host's RSS before and at its peak in each phase.
//   npm run bench:streams [-- --streams 200 --per-tenant 10 --hold-ms 20000 --uploads 100 --upload-mib 4]
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startStack } from '../local/stack.js';
import { runStreamLoad } from '../testkit/stream-load.js';

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  const v = i >= 0 ? Number(process.argv[i + 1]) : NaN;
  return Number.isFinite(v) && v > 0 ? v : fallback;
}

const dir = mkdtempSync(join(tmpdir(), 'bench-streams-'));
const stack = await startStack({ stateDir: join(dir, 'state'), freePorts: true, timers: false, settings: { LOG_LEVEL: 'warn' } });
const pid = stack.host.child.pid!;
const status = (field: 'VmRSS' | 'VmHWM') => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN) / 1024;
try {
  const report = await runStreamLoad({
    apiUrl: stack.apiUrl,
    devSecret: stack.settings.AUTH_DEV_SECRET!,
    streams: arg('streams', 200),
    perTenant: arg('per-tenant', 10),
    holdMs: arg('hold-ms', 20_000),
    uploads: arg('uploads', 100),
    uploadBytes: arg('upload-mib', 4) * 1024 * 1024,
    rssMiB: () => status('VmRSS'),
  });
  console.log(JSON.stringify({ ...report, hostPeakRssMiB: Math.round(status('VmHWM')), loadAverage: (await import('node:os')).loadavg().map((l) => +l.toFixed(2)) }, null, 2));
  const bad = report.sse.serverErrors + report.sse.networkErrors + report.uploads.serverErrors + report.uploads.networkErrors;
  if (bad > 0) process.exitCode = 1;
} finally {
  await stack.stop();
  rmSync(dir, { recursive: true, force: true });
}

// Upload benchmark: the two ways a LoRA reaches storage, side by side with a plain SDK upload of the same file.
//   npm run bench:upload [-- --size-mb 1024 --multipart-mb 95 --runs 1]
// Starts its own stack on free ports (Azurite on disk, cosmosdb-server, the dev Functions host), generates valid
// safetensors files, and for each path reports throughput and the API host's peak RSS:
//   - SAS flow (large file): POST /api/user-loras → block upload to the SAS URL → BlobCreated validation → ready;
//     "upload MB/s" is the PUT alone, "end-to-end MB/s" includes validation and sha256 until the record is ready.
//   - multipart (≤ 100 MB): POST /api/user-loras/upload streamed through the API into blocks, validated before 201.
//   - plain SDK: BlockBlobClient.uploadFile of the same file straight to a container (same block size/concurrency).
// Peak RSS is the host process's VmHWM, reset before each phase (/proc/<pid>/clear_refs), plus a 50 ms RSS sampler.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BlobServiceClient } from '@azure/storage-blob';
import { ApiClient } from '../api-client/index.js';
import { uploadLora } from '../cli/commands/loras.js';
import { issueDevToken } from '../functions/core/auth.js';
import { writeSafetensorsFile } from '../testkit/safetensors.js';
import { startStack } from '../local/stack.js';

const MB = 1024 * 1024;

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  const v = i >= 0 ? Number(process.argv[i + 1]) : NaN;
  return Number.isFinite(v) && v > 0 ? v : fallback;
}
const SIZE_MB = arg('size-mb', 1024);
const MULTIPART_MB = Math.min(arg('multipart-mb', 95), 99);
const RUNS = arg('runs', 1);
const BLOCK = 8 * MB;
const CONCURRENCY = 4;

function memory(pid: number): { rss: number; hwm: number } {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(s)?.[1] ?? NaN) / 1024;
  return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
}

/** Peak RSS (MiB) of `pid` while `fn` runs. */
async function withPeakRss<T>(pid: number, fn: () => Promise<T>): Promise<{ value: T; peakMiB: number; baseMiB: number }> {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5'); // resets VmHWM to the current RSS
  } catch {
    /* not permitted: the sampler still works */
  }
  const baseMiB = memory(pid).rss;
  let sampled = baseMiB;
  const timer = setInterval(() => {
    try {
      sampled = Math.max(sampled, memory(pid).rss);
    } catch {
      /* exited */
    }
  }, 50);
  try {
    const value = await fn();
    const { hwm } = memory(pid);
    return { value, peakMiB: Math.max(sampled, Number.isFinite(hwm) ? hwm : 0), baseMiB };
  } finally {
    clearInterval(timer);
  }
}

interface Row {
  path: string;
  fileMiB: number;
  seconds: number;
  mbps: number;
  e2eSeconds?: number;
  e2eMbps?: number;
  hostPeakMiB?: number;
  hostBaseMiB?: number;
  ok: string;
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'lora-bench-upload-'));
  process.stdout.write(`starting the local stack (state in ${dir}) ...\n`);
  const stack = await startStack({ stateDir: join(dir, 'state'), freePorts: true, timers: false, settings: { LOG_LEVEL: 'warn' } });
  const rows: Row[] = [];
  try {
    const pid = stack.host.child.pid!;
    const token = await issueDevToken(stack.settings.AUTH_DEV_SECRET!, 'bench-user', 'user');
    const api = new ApiClient({ baseUrl: stack.apiUrl, token });
    const blobService = BlobServiceClient.fromConnectionString(stack.settings.LoraStorage!);
    const plain = blobService.getContainerClient('bench-plain');
    await plain.createIfNotExists();

    process.stdout.write(`generating ${SIZE_MB} MiB and ${MULTIPART_MB} MiB safetensors files ...\n`);
    const big = await writeSafetensorsFile(join(dir, 'big.safetensors'), SIZE_MB * MB);
    const small = await writeSafetensorsFile(join(dir, 'small.safetensors'), MULTIPART_MB * MB);
    // Warm-up: modules, connection pools, JIT.
    const warm = await writeSafetensorsFile(join(dir, 'warm.safetensors'), MB);
    await uploadLora(api, join(dir, 'warm.safetensors'), { flow: 'multipart' });
    await uploadLora(api, join(dir, 'warm.safetensors'), { flow: 'sas' });
    void warm;

    for (let run = 1; run <= RUNS; run++) {
      const tag = RUNS > 1 ? ` #${run}` : '';
      {
        const t0 = Date.now();
        await plain.getBlockBlobClient(`plain-${run}-big`).uploadFile(join(dir, 'big.safetensors'), { blockSize: BLOCK, concurrency: CONCURRENCY });
        const s = (Date.now() - t0) / 1000;
        rows.push({ path: `plain SDK uploadFile${tag}`, fileMiB: big.sizeBytes / MB, seconds: s, mbps: big.sizeBytes / MB / s, ok: 'stored' });
        await plain.getBlockBlobClient(`plain-${run}-big`).delete();
      }
      {
        let putDone = 0;
        const t0 = Date.now();
        const m = await withPeakRss(pid, () =>
          uploadLora(api, join(dir, 'big.safetensors'), { flow: 'sas', blockBytes: BLOCK, concurrency: CONCURRENCY, onValidating: () => (putDone = Date.now()) }),
        );
        const e2e = (Date.now() - t0) / 1000;
        const put = (putDone - t0) / 1000;
        const ok = m.value.status === 'ready' && m.value.sha256 === big.sha256 ? 'ready, sha256 ok' : `${m.value.status} ${m.value.reject_reason ?? ''}`;
        rows.push({ path: `SAS flow (blocks)${tag}`, fileMiB: big.sizeBytes / MB, seconds: put, mbps: big.sizeBytes / MB / put, e2eSeconds: e2e, e2eMbps: big.sizeBytes / MB / e2e, hostPeakMiB: m.peakMiB, hostBaseMiB: m.baseMiB, ok });
        await api.delete(`user-loras/${m.value.id}`);
      }
      {
        const t0 = Date.now();
        await plain.getBlockBlobClient(`plain-${run}-small`).uploadFile(join(dir, 'small.safetensors'), { blockSize: 4 * MB, concurrency: CONCURRENCY });
        const s = (Date.now() - t0) / 1000;
        rows.push({ path: `plain SDK uploadFile${tag}`, fileMiB: small.sizeBytes / MB, seconds: s, mbps: small.sizeBytes / MB / s, ok: 'stored' });
      }
      {
        const t0 = Date.now();
        const m = await withPeakRss(pid, () => uploadLora(api, join(dir, 'small.safetensors'), { flow: 'multipart' }));
        const s = (Date.now() - t0) / 1000;
        const ok = m.value.status === 'ready' && m.value.sha256 === small.sha256 ? 'ready, sha256 ok' : `${m.value.status} ${m.value.reject_reason ?? ''}`;
        rows.push({ path: `multipart via API${tag}`, fileMiB: small.sizeBytes / MB, seconds: s, mbps: small.sizeBytes / MB / s, e2eSeconds: s, e2eMbps: small.sizeBytes / MB / s, hostPeakMiB: m.peakMiB, hostBaseMiB: m.baseMiB, ok });
        await api.delete(`user-loras/${m.value.id}`);
      }
    }
  } finally {
    await stack.stop();
    rmSync(dir, { recursive: true, force: true });
  }

  const f = (n: number | undefined, d = 1) => (n === undefined ? '-' : n.toFixed(d));
  const table = [
    ['path', 'file MiB', 'upload s', 'upload MB/s', 'to ready s', 'to ready MB/s', 'host RSS base→peak MiB', 'result'],
    ...rows.map((r) => [
      r.path,
      f(r.fileMiB, 0),
      f(r.seconds),
      f(r.mbps),
      f(r.e2eSeconds),
      f(r.e2eMbps),
      r.hostPeakMiB === undefined ? '-' : `${f(r.hostBaseMiB, 0)}→${f(r.hostPeakMiB, 0)}`,
      r.ok,
    ]),
  ];
  const widths = table[0]!.map((_, i) => Math.max(...table.map((row) => row[i]!.length)));
  process.stdout.write(`\n${table.map((row) => row.map((c, i) => c.padEnd(widths[i]!)).join('  ')).join('\n')}\n`);
  process.stdout.write(`\n(MB/s = MiB per second; node ${process.version}, Azurite on local disk, block ${BLOCK / MB} MiB × ${CONCURRENCY})\n`);
  if (process.argv.includes('--json')) process.stdout.write(`${JSON.stringify(rows)}\n`);
  if (rows.some((r) => r.ok !== 'stored' && !r.ok.startsWith('ready'))) process.exitCode = 1;
}

await main();

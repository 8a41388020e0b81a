// Output upload benchmark: the agent's delivery path (worker-agent/src/outputs.ts: declare → write-only SAS per file →
// streamed parallel block upload with sha256 alongside) against a plain SDK upload of the same files, in one run.
//   npm run bench:outputs [-- --files 16 --file-mb 8 --runs 3]
// Starts its own Azurite (on disk, free loopback ports). The control plane's part is played in-process by the same
// SAS issuer the Functions app uses (functions/adapters/blob-sas.ts), so the figure is the agent's own overhead.
// Plain SDK: BlockBlobClient.uploadFile with the same block size, blocks in flight and files in flight.
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { BlobServiceClient } from '@azure/storage-blob';
import type { OutputUploadRequest, OutputUploadResponse } from '../contract/outputs.js';
import { BlobSas } from '../functions/adapters/blob-sas.js';
import { startAzurite } from '../local/emulators.js';
import { deliverOutputs, type OutputsApi } from '../worker-agent/src/outputs.js';

const { values } = parseArgs({
  options: { files: { type: 'string', default: '16' }, 'file-mb': { type: 'string', default: '8' }, runs: { type: 'string', default: '3' } },
});
const files = Number(values.files);
const fileBytes = Math.round(Number(values['file-mb']) * 1024 * 1024);
const runs = Number(values.runs);
const dir = mkdtempSync(join(tmpdir(), 'bench-outputs-'));
const outDir = join(dir, 'output');
mkdirSync(outDir);
for (let i = 0; i < files; i++) writeFileSync(join(outDir, `image-${String(i).padStart(3, '0')}.png`), randomBytes(fileBytes));
const totalMiB = (files * fileBytes) / 1024 / 1024;

const azurite = await startAzurite({ location: join(dir, 'azurite') });
try {
  const service = BlobServiceClient.fromConnectionString(azurite.connectionString);
  const container = service.getContainerClient('bench-outputs');
  await container.createIfNotExists();
  const sas = new BlobSas(service);
  let epoch = 0;
  const api: OutputsApi = {
    async outputUploads(_jobId: string, body: OutputUploadRequest) {
      const expires = new Date(Date.now() + 30 * 60_000);
      const uploads = await Promise.all(
        body.files.map(async (f) => {
          const blob_name = `outputs/bench/job/e${body.epoch}/${f.name}`;
          return { name: f.name, blob_name, upload_url: await sas.url('bench-outputs', blob_name, 'create-write', expires) };
        }),
      );
      return { ok: true as const, value: { uploads, expires_at: expires.toISOString() } satisfies OutputUploadResponse };
    },
  };
  const agentRun = async (): Promise<number> => {
    const t0 = performance.now();
    const r = await deliverOutputs({ api, jobId: 'job_bench', epoch: ++epoch, outputDir: outDir });
    if (r.kind !== 'delivered' || r.outputs.length !== files) throw new Error(`delivery: ${JSON.stringify(r).slice(0, 300)}`);
    return totalMiB / ((performance.now() - t0) / 1000);
  };
  const sdkRun = async (): Promise<number> => {
    const t0 = performance.now();
    const names = Array.from({ length: files }, (_, i) => `image-${String(i).padStart(3, '0')}.png`);
    const run = ++epoch;
    let next = 0;
    await Promise.all(
      Array.from({ length: 2 }, async () => {
        while (next < names.length) {
          const n = names[next++]!;
          await container.getBlockBlobClient(`plain/${run}/${n}`).uploadFile(join(outDir, n), { blockSize: 4 * 1024 * 1024, concurrency: 4, blobHTTPHeaders: { blobContentType: 'image/png' } });
        }
      }),
    );
    return totalMiB / ((performance.now() - t0) / 1000);
  };
  await agentRun(); // warm-up (connections, Azurite's first writes)
  await sdkRun();
  const agent: number[] = [];
  const sdk: number[] = [];
  for (let i = 0; i < runs; i++) {
    agent.push(await agentRun());
    sdk.push(await sdkRun());
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const fmt = (xs: number[]) => xs.map((x) => x.toFixed(1)).join(', ');
  console.log(`outputs: ${files} files × ${(fileBytes / 1024 / 1024).toFixed(1)} MiB = ${totalMiB.toFixed(0)} MiB per run, ${runs} runs (alternating)`);
  console.log(`  agent delivery (SAS per file, streamed, sha256)  median ${median(agent).toFixed(1)} MiB/s  [${fmt(agent)}]`);
  console.log(`  plain SDK uploadFile                            median ${median(sdk).toFixed(1)} MiB/s  [${fmt(sdk)}]`);
  console.log(`  ratio agent / SDK                               ${(median(agent) / median(sdk)).toFixed(2)}×`);
} finally {
  await azurite.stop();
  rmSync(dir, { recursive: true, force: true });
}

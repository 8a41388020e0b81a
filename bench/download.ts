// Download benchmark: the agent's downloader (streamed sha256 + partial file + fsync + atomic rename, exactly what the
// cache runs on a miss) against a plain SDK `BlobClient.downloadToFile` of the same blob, side by side.
//   npm run bench:download                        (builds, then node dist/bench/download.js [sizeMiB] [rounds])
// Starts its own Azurite (free ports, throw-away directory) through local/stack.ts and stops it at the end. Each round
// runs both downloaders once, alternating which goes first; the SDK's file is fsynced (untimed) and every file deleted
// after its run, so neither run pays for the other's disk writes. Prints MB/s per round and the ratio of the medians (target: agent ≥ 0.9 × SDK).
import { randomBytes } from 'node:crypto';
import { createHash } from 'node:crypto';
import { closeSync, fsyncSync, mkdtempSync, openSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import {
  BlobSASPermissions,
  BlobServiceClient,
  StorageSharedKeyCredential,
  generateBlobSASQueryParameters,
  type BlockBlobClient,
} from '@azure/storage-blob';
import { AZURITE_ACCOUNT, AZURITE_KEY } from '../local/emulators.js';
import { startEmulators } from '../local/stack.js';
import { downloadVerified } from '../worker-agent/src/download/download.js';

const TARGET_RATIO = 0.9;
const sizeMiB = Math.max(16, Number.parseInt(process.argv[2] ?? '', 10) || 256);
const rounds = Math.max(2, Number.parseInt(process.argv[3] ?? '', 10) || 4);
const MiB = 1024 * 1024;
const mbps = (bytes: number, ms: number) => bytes / 1e6 / (ms / 1000);
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

async function uploadBlob(blob: BlockBlobClient, bytes: number): Promise<string> {
  // Random content in 8 MiB blocks (incompressible, and the hash is real work), hashed while it is generated.
  const hash = createHash('sha256');
  const block = 8 * MiB;
  const ids: string[] = [];
  for (let off = 0, i = 0; off < bytes; off += block, i++) {
    const chunk = randomBytes(Math.min(block, bytes - off));
    hash.update(chunk);
    const id = Buffer.from(String(i).padStart(8, '0')).toString('base64');
    await blob.stageBlock(id, chunk, chunk.length);
    ids.push(id);
  }
  await blob.commitBlockList(ids);
  return hash.digest('hex');
}

async function main(): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), 'bench-download-'));
  process.stdout.write(`starting Azurite (state in ${work}) ...\n`);
  const emulators = await startEmulators({ stateDir: work, freePorts: true, inMemory: true });
  try {
    const service = BlobServiceClient.fromConnectionString(emulators.azurite.connectionString);
    const container = service.getContainerClient('bench');
    await container.createIfNotExists();
    const blob = container.getBlockBlobClient('lora.safetensors');
    const bytes = sizeMiB * MiB;
    process.stdout.write(`uploading a ${sizeMiB} MiB blob ...\n`);
    const sha256 = await uploadBlob(blob, bytes);
    const sas = generateBlobSASQueryParameters(
      {
        containerName: 'bench',
        blobName: 'lora.safetensors',
        permissions: BlobSASPermissions.parse('r'),
        startsOn: new Date(Date.now() - 60_000),
        expiresOn: new Date(Date.now() + 3_600_000),
      },
      new StorageSharedKeyCredential(AZURITE_ACCOUNT, AZURITE_KEY),
    ).toString();
    const sasUrl = `${blob.url}?${sas}`;

    const runAgent = async (round: number): Promise<number> => {
      const dest = join(work, `agent-${round}.safetensors`);
      const t0 = performance.now();
      const r = await downloadVerified({ url: sasUrl, dest, partialPath: `${dest}.part`, expectedSize: bytes, expectedSha256: sha256 });
      const ms = performance.now() - t0;
      if (r.sizeBytes !== bytes || statSync(dest).size !== bytes) throw new Error('agent download: wrong size');
      rmSync(dest, { force: true });
      return ms;
    };
    const runSdk = async (round: number): Promise<number> => {
      const dest = join(work, `sdk-${round}.bin`);
      const t0 = performance.now();
      await blob.downloadToFile(dest);
      const ms = performance.now() - t0;
      if (statSync(dest).size !== bytes) throw new Error('SDK download: wrong size');
      // Untimed: flush what the SDK left dirty in the page cache. Otherwise the next fsync (the agent's) pays for
      // writing back this file too (ext4 data=ordered journal commits), which would bill the SDK's I/O to the agent.
      const fd = openSync(dest, 'r+');
      fsyncSync(fd);
      closeSync(fd);
      rmSync(dest, { force: true });
      return ms;
    };

    // Warm-up (connection set-up, JIT), not counted.
    await runSdk(-1);
    await runAgent(-1);

    const agentMbps: number[] = [];
    const sdkMbps: number[] = [];
    process.stdout.write(`\n${rounds} rounds of ${sizeMiB} MiB (${(bytes / 1e6).toFixed(0)} MB) over loopback HTTP\n`);
    process.stdout.write('round  first   agent (sha256 + fsync + rename)   SDK downloadToFile\n');
    for (let i = 0; i < rounds; i++) {
      const agentFirst = i % 2 === 0;
      let a: number;
      let s: number;
      if (agentFirst) {
        a = await runAgent(i);
        s = await runSdk(i);
      } else {
        s = await runSdk(i);
        a = await runAgent(i);
      }
      agentMbps.push(mbps(bytes, a));
      sdkMbps.push(mbps(bytes, s));
      process.stdout.write(
        `${String(i + 1).padStart(5)}  ${agentFirst ? 'agent' : 'sdk  '}   ${mbps(bytes, a).toFixed(1).padStart(8)} MB/s (${a.toFixed(0)} ms)         ${mbps(bytes, s).toFixed(1).padStart(8)} MB/s (${s.toFixed(0)} ms)\n`,
      );
    }
    const ma = median(agentMbps);
    const ms = median(sdkMbps);
    const ratio = ma / ms;
    process.stdout.write(`\nmedian: agent ${ma.toFixed(1)} MB/s, SDK ${ms.toFixed(1)} MB/s, ratio ${ratio.toFixed(2)}× (target ≥ ${TARGET_RATIO}×) ${ratio >= TARGET_RATIO ? 'OK' : 'BELOW TARGET'}\n`);
    process.exitCode = ratio >= TARGET_RATIO ? 0 : 1;
  } finally {
    await emulators.stop();
    rmSync(work, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench:download failed: ${(err as Error)?.stack ?? String(err)}\n`);
  process.exit(1);
});

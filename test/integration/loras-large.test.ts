// Large files never sit in the API's memory: a ~90 MB multipart upload (streamed through busboy into blocks) and a
// 200 MB file through the SAS flow (validated by ranged reads, hashed by one streaming GET) become ready with the right
// sha256 while the dev Functions host's peak RSS stays far below the file sizes; a chunked multipart body that grows
// past 100 MB is cut off with 413 and leaves nothing behind.
// Sizes: LORA_TEST_MULTIPART_MB (default 90), LORA_TEST_SAS_MB (default 1024, the 1 GB). The 1-2 GB runs: `npm run bench:upload`.
import { mkdtempSync, openAsBlob, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BlockBlobClient } from '@azure/storage-blob';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CreateUploadResponse, DirectUploadResponse, UserLora } from '../../contract/loras.js';
import { writeSafetensorsFile, type WrittenFile } from '../../testkit/safetensors.js';
import { startTestHost, type TestHost } from '../support/stack.js';
import { blobNames, form, jsonOf, memoryOf, rawPost, waitSettled } from './loras.fixtures.js';

const MB = 1024 * 1024;
const MULTIPART_MB = Number(process.env.LORA_TEST_MULTIPART_MB ?? 90);
const SAS_MB = Number(process.env.LORA_TEST_SAS_MB ?? 1024);
const RSS_LIMIT_MIB = 300;

let t: TestHost;
let dir: string;
let baselineMiB = 0;

beforeAll(async () => {
  t = await startTestHost({}, { timers: false });
  dir = mkdtempSync(join(tmpdir(), 'lora-large-'));
  // Warm up the upload path so the baseline includes loaded modules and connection pools.
  const warm = join(dir, 'warm.safetensors');
  await writeSafetensorsFile(warm, 64 * 1024);
  const res = await (await t.as('warmup')).raw('POST', 'user-loras/upload', { body: form(await openAsBlob(warm), 'warm.safetensors') });
  expect(res.status).toBe(201);
  baselineMiB = memoryOf(t.host.child.pid!).rssMiB;
});
afterAll(async () => {
  await t?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('large uploads stream through the API', () => {
  it(`multipart: a ${MULTIPART_MB} MB file becomes ready with the right sha256, host RSS < ${RSS_LIMIT_MIB} MiB`, async () => {
    const api = await t.as('big-multipart');
    const path = join(dir, 'multipart.safetensors');
    const file: WrittenFile = await writeSafetensorsFile(path, MULTIPART_MB * MB);
    const started = Date.now();
    const res = await jsonOf(await api.raw('POST', 'user-loras/upload', { body: form(await openAsBlob(path), 'big.safetensors') }));
    const seconds = (Date.now() - started) / 1000;
    expect(res.status, JSON.stringify(res.body)).toBe(201);
    const body = res.body as unknown as DirectUploadResponse;
    expect(body).toMatchObject({ status: 'ready', sha256: file.sha256, size_bytes: file.sizeBytes });
    const mem = memoryOf(t.host.child.pid!);
    console.log(
      `multipart ${MULTIPART_MB} MB: ${(file.sizeBytes / MB / seconds).toFixed(1)} MB/s, host peak RSS ${mem.peakMiB.toFixed(0)} MiB (baseline ${baselineMiB.toFixed(0)} MiB)`,
    );
    expect(mem.peakMiB).toBeLessThan(RSS_LIMIT_MIB);
    // Growth over the warmed-up baseline: a few blocks in flight, never the file.
    expect(mem.peakMiB - baselineMiB).toBeLessThan(80);
    rmSync(path);
  });

  it('413 for a streamed (chunked) file that grows past 100 MB, and nothing is kept', async () => {
    const user = await t.as('too-big-chunked');
    const boundary = 'chunkedboundary';
    const url = new URL(user.url('user-loras/upload'));
    const head = Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="huge.safetensors"\r\nContent-Type: application/octet-stream\r\n\r\n`);
    const chunk = Buffer.alloc(4 * 1024 * 1024, 7);
    const headers = { authorization: `Bearer ${user.options.token}`, 'content-type': `multipart/form-data; boundary=${boundary}`, 'transfer-encoding': 'chunked' };
    const result = await rawPost(
      url,
      headers,
      (req) => {
        req.write(head);
        let sent = 0;
        let answered = false;
        req.once('response', () => (answered = true));
        const pump = () => {
          while (sent < 110 * 1024 * 1024 && !answered) {
            sent += chunk.length;
            if (!req.write(chunk)) return void req.once('drain', pump);
          }
          req.end(`\r\n--${boundary}--\r\n`);
        };
        pump();
      },
      /socket hang up|EPIPE|ECONNRESET/,
    );
    expect(result.status).toBe(413);
    expect(JSON.parse(result.body).error.code).toBe('too_large');
    await expect.poll(async () => (await user.get<{ loras: UserLora[] }>('user-loras')).loras.length).toBe(0);
    await expect.poll(() => blobNames(t, t.settings.USER_LORA_CONTAINER!, 'users/too-big-chunked/')).toEqual([]);
  });

  it(`SAS flow: a ${SAS_MB} MB file put in blocks becomes ready with the right sha256, host RSS < ${RSS_LIMIT_MIB} MiB`, async () => {
    const api = await t.as('big-sas');
    const path = join(dir, 'sas.safetensors');
    const file = await writeSafetensorsFile(path, SAS_MB * MB);
    const started = Date.now();
    const session = await api.post<CreateUploadResponse>('user-loras', { original_name: 'huge.safetensors', size_bytes: file.sizeBytes });
    await new BlockBlobClient(session.upload_url).uploadFile(path, { blockSize: 8 * MB, concurrency: 4 });
    const uploaded = (Date.now() - started) / 1000;
    const lora = await waitSettled(api, session.flat_file_id, 120_000);
    const total = (Date.now() - started) / 1000;
    expect(lora).toMatchObject({ status: 'ready', sha256: file.sha256, size_bytes: file.sizeBytes });
    const mem = memoryOf(t.host.child.pid!);
    console.log(
      `SAS ${SAS_MB} MB: upload ${(file.sizeBytes / MB / uploaded).toFixed(1)} MB/s, ready after ${total.toFixed(1)} s, host peak RSS ${mem.peakMiB.toFixed(0)} MiB`,
    );
    expect(mem.peakMiB).toBeLessThan(RSS_LIMIT_MIB);
    rmSync(path);
  }, 180_000);
});

// Issue 18 item 11, against the dev host on Azurite + cosmosdb-server:
//  - read URLs from a claim are short (a floor plus the file's size at a minimum rate, capped) and a fresh one is given
//    only to the machine that runs the job at its current epoch (POST /jobs/{id}/download-url);
//  - an upload SAS cannot bound what is written, so validation enforces the owner's byte quota from the blob's
//    properties first, before reading any byte, rejects with a plain reason and deletes the blob.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ApiClient } from '../../api-client/index.js';
import type { ClaimResponse, DownloadUrlResponse } from '../../contract/jobs.js';
import type { CreateUploadResponse } from '../../contract/loras.js';
import { blobState } from '../../functions/core/loras/blob-io.js';
import { loraDepsFromClients } from '../../functions/core/loras/deps.js';
import { readLora } from '../../functions/core/loras/store.js';
import { judgeBlob } from '../../functions/core/loras/verdict.js';
import { makeSafetensors } from '../../testkit/safetensors.js';
import { startTestHost, type TestHost } from '../support/stack.js';
import { errorOf, runTimer, seedLora, suffix, TestMachine } from './jobs.fixtures.js';
import { blobNames, uploadViaSas, waitSettled } from './loras.fixtures.js';
import { BlockBlobClient } from '@azure/storage-blob';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { freshDownloadUrl, HttpControlPlane } from '../../worker-agent/src/api.js';
import { downloadVerified } from '../../worker-agent/src/download/download.js';

const silentLog = pino({ level: 'silent' });

const MIB = 1024 * 1024;
const QUOTA_BYTES = 4 * MIB;
let t: TestHost;
let admin: ApiClient;
const machines: TestMachine[] = [];

beforeAll(async () => {
  t = await startTestHost(
    {
      DOWNLOAD_SAS_MIN_MINUTES: '2',
      DOWNLOAD_SAS_MIN_MIBPS: '1',
      DOWNLOAD_SAS_MINUTES: '10',
      USER_MAX_LORA_BYTES: String(QUOTA_BYTES),
      PLACEMENT_ON_EVENTS: 'false',
      SCHEDULER_POLICY: 'adr010',
    },
    { timers: false },
  );
  admin = await t.as('ops', 'admin');
});
afterAll(async () => {
  for (const m of machines) await m.close();
  await t?.stop();
});

/** Seconds from now until a SAS URL's `se`. */
const sasSecondsLeft = (url: string): number => (Date.parse(new URL(url).searchParams.get('se')!) - Date.now()) / 1000;

describe('download URLs are short and bound to the claim', () => {
  let m: TestMachine;
  let user: ApiClient;
  const content = Buffer.alloc(3 * MIB, 7);
  let small: string;
  let huge: string;

  beforeAll(async () => {
    user = await t.as('dl-owner');
    small = (await seedLora(t, { owner: 'dl-owner', content })).id;
    huge = (await seedLora(t, { owner: 'dl-owner', sizeBytes: 20 * 1024 * MIB })).id; // record only: never downloaded
    m = await TestMachine.register(t, admin, `gpu-dl-${suffix()}`, 'dlpool', 4);
    machines.push(m);
  });

  async function claimedJob(loras: string[]): Promise<{ id: string; spec: ClaimResponse }> {
    const { job_id: id } = await user.post<{ job_id: string }>('jobs', {
      service_required: 'comfyui',
      pool: 'dlpool',
      payload: {},
      requirements: { loras: loras.map((flat_file_id) => ({ type: 'user', flat_file_id })) },
    });
    await m.beat();
    await runTimer(t, 'schedulerTick');
    expect(await m.drain()).toContainEqual({ job_id: id, epoch: 1 });
    const res = await m.claim(id, 1);
    expect(res.status).toBe(200);
    return { id, spec: (await res.json()) as ClaimResponse };
  }

  const refresh = (machine: TestMachine, id: string, body: Record<string, unknown>) =>
    machine.api.raw('POST', `jobs/${id}/download-url`, { body: { machine_id: machine.id, epoch: 1, ...body } });

  it('sizes each URL to its file: 2 min + 3 MiB at 1 MiB/s for the small one, the 10 min cap for a 20 GiB one', async () => {
    const { id, spec } = await claimedJob([small, huge]);
    const [s, h] = spec.loras;
    // Generous slack below (slow shared machine), none above: the old fixed 60 minutes fails both.
    expect(sasSecondsLeft(s!.download_url)).toBeLessThanOrEqual(2 * 60 + 3 + 1);
    expect(sasSecondsLeft(s!.download_url)).toBeGreaterThan(60);
    expect(sasSecondsLeft(h!.download_url)).toBeLessThanOrEqual(10 * 60 + 1);
    expect(sasSecondsLeft(h!.download_url)).toBeGreaterThan(8 * 60);
    // The claim's expiry is the first URL's (the SAS carries it to the second).
    expect(Math.abs(Date.parse(spec.download_url_expires_at) - Date.parse(new URL(s!.download_url).searchParams.get('se')!))).toBeLessThan(1000);
    await user.delete(`jobs/${id}`);
  });

  it('gives the running machine a fresh URL for one of its LoRAs, and nobody else one', async () => {
    const { id, spec } = await claimedJob([small]);
    const res = await refresh(m, id, { key: small });
    expect(res.status).toBe(200);
    const fresh = (await res.json()) as DownloadUrlResponse;
    expect(fresh.key).toBe(small);
    expect(sasSecondsLeft(fresh.download_url)).toBeLessThanOrEqual(2 * 60 + 3 + 1);
    expect(Buffer.from(await (await fetch(fresh.download_url)).arrayBuffer()).equals(content)).toBe(true);
    expect(spec.loras[0]!.key).toBe(small);

    expect(await errorOf(await refresh(m, id, { key: huge }))).toMatchObject({ status: 404, code: 'not_found' }); // not this job's
    expect(await errorOf(await refresh(m, id, { key: small, epoch: 2 }))).toMatchObject({ status: 409, code: 'conflict' });
    const other = await TestMachine.register(t, admin, `gpu-other-${suffix()}`, 'dlpool', 1);
    machines.push(other);
    expect(await errorOf(await refresh(other, id, { key: small }))).toMatchObject({ status: 409 });
    expect((await other.api.raw('POST', `jobs/${id}/download-url`, { body: { machine_id: m.id, epoch: 1, key: small } })).status).toBe(403);
    expect((await user.raw('POST', `jobs/${id}/download-url`, { body: { machine_id: m.id, epoch: 1, key: small } })).status).toBe(403);
    expect(await errorOf(await refresh(m, 'job_00000000000000000000000000', { key: small }))).toMatchObject({ status: 404 });

    // Cancelled: the machine gets no more URLs.
    await user.delete(`jobs/${id}`);
    expect(await errorOf(await refresh(m, id, { key: small }))).toMatchObject({ status: 409, message: expect.stringMatching(/cancelled/) });
  });

  it('the agent downloader, given an expired URL (403 from Azurite), gets a fresh one through the API and finishes', async () => {
    const { id, spec } = await claimedJob([small]);
    const lora = spec.loras[0]!;
    const doc = (await readLora(loraDepsFromClients(t.clients), small, 'dl-owner'))!;
    const expired = await t.clients.blobSas.url(doc.container, doc.blob_name, 'read', new Date(Date.now() - 60_000));
    expect((await fetch(expired)).status).toBe(403);
    const api = new HttpControlPlane({ baseUrl: t.apiUrl, token: m.token, machineId: m.id, log: silentLog });
    const dir = mkdtempSync(join(tmpdir(), 'dl-refresh-'));
    let refreshed = 0;
    try {
      const result = await downloadVerified({
        url: expired,
        dest: join(dir, 'lora.safetensors'),
        partialPath: join(dir, 'lora.partial'),
        expectedSize: lora.size_bytes,
        expectedSha256: lora.sha256,
        minRetryDelayMs: 10,
        refreshUrl: () => {
          refreshed += 1;
          return freshDownloadUrl(api, id, 1, small, AbortSignal.timeout(30_000));
        },
      });
      expect(result.bytesTransferred).toBe(content.length);
      expect(readFileSync(join(dir, 'lora.safetensors')).equals(content)).toBe(true);
      expect(refreshed).toBe(1);

      // Once the job is cancelled the refresh is refused and the download ends with that reason.
      await user.delete(`jobs/${id}`);
      await expect(
        downloadVerified({
          url: expired,
          dest: join(dir, 'again.safetensors'),
          partialPath: join(dir, 'again.partial'),
          expectedSize: lora.size_bytes,
          expectedSha256: lora.sha256,
          minRetryDelayMs: 10,
          refreshUrl: () => freshDownloadUrl(api, id, 1, small, AbortSignal.timeout(30_000)),
        }),
      ).rejects.toThrow(/no fresh download URL.*cancelled/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a job that is assigned but not claimed yet gets no URL (409)', async () => {
    const { job_id: id } = await user.post<{ job_id: string }>('jobs', { service_required: 'comfyui', pool: 'dlpool', payload: {}, requirements: { loras: [{ type: 'user', flat_file_id: small }] } });
    await m.beat();
    await runTimer(t, 'schedulerTick');
    expect(await m.drain()).toContainEqual({ job_id: id, epoch: 1 });
    expect(await errorOf(await refresh(m, id, { key: small }))).toMatchObject({ status: 409 });
    await user.delete(`jobs/${id}`);
  });
});

describe('upload SAS: the quota is enforced at validation, before any byte is read', () => {
  it('a blob larger than declared and than the quota is rejected from its properties alone, with a plain reason, and deleted', async () => {
    const owner = `up-${suffix()}`;
    const user = await t.as(owner);
    // Declared 64 KiB (fits the 4 MiB quota), but 6 MiB are written through the SAS.
    const big = makeSafetensors({ dataBytes: 6 * MIB, seed: 3, metadata: { format: 'pt' } });
    const session = await user.post<CreateUploadResponse>('user-loras', { original_name: 'sneaky.safetensors', size_bytes: 64 * 1024 });

    // The judge itself, on the real blob, with reads counted: none may happen.
    const deps = loraDepsFromClients(t.clients);
    const container = t.settings.USER_LORA_CONTAINER!;
    const unwatchedName = `judge-${suffix()}`;
    await t.clients.blobService.getContainerClient(unwatchedName).createIfNotExists();
    const probe = t.clients.blobService.getContainerClient(unwatchedName).getBlockBlobClient('x.safetensors');
    await probe.uploadData(big);
    let downloads = 0;
    const counted = new Proxy(probe, {
      get(target, prop, receiver) {
        if (prop === 'download') downloads += 1;
        const v = Reflect.get(target, prop, receiver) as unknown;
        return typeof v === 'function' ? v.bind(target) : v;
      },
    });
    const doc = (await readLora(deps, session.flat_file_id, owner))!;
    const verdict = await judgeBlob(deps, doc, counted, (await blobState(probe))!);
    expect(verdict).toMatchObject({ ok: false, code: 'quota_exceeded', size: big.length });
    expect(downloads).toBe(0);

    // The same through the real flow: SAS PUT, BlobCreated, rejected with the quota's numbers, blob deleted.
    await new BlockBlobClient(session.upload_url).uploadData(big, { blockSize: 4 * MIB });
    const settled = await waitSettled(user, session.flat_file_id);
    expect(settled.status).toBe('rejected');
    expect(settled.reject_reason).toMatch(/storage quota exceeded: 0 bytes of 4\.0 MiB used, this file needs 6\.0 MiB/);
    await expect.poll(() => blobNames(t, container, `users/${owner}/`)).toEqual([]);
  });

  it('a blob that fits the quota but not its declared size is still rejected as a size mismatch', async () => {
    const owner = `up-${suffix()}`;
    const user = await t.as(owner);
    const bytes = makeSafetensors({ dataBytes: MIB, seed: 4, metadata: { format: 'pt' } });
    const s = await uploadViaSas(user, bytes, 'off.safetensors', 1000);
    const settled = await waitSettled(user, s.flat_file_id);
    expect(settled).toMatchObject({ status: 'rejected' });
    expect(settled.reject_reason).toMatch(/size mismatch/);
  });
});

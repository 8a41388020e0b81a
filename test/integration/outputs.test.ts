// Job outputs over real HTTP (dev host, Azurite, cosmosdb-server) with a machine driven by hand: write-only upload URLs
// for the running epoch only, limits, the all-or-nothing record with `succeeded`, owner-only read URLs.
import { BlockBlobClient } from '@azure/storage-blob';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ApiClient } from '../../api-client/index.js';
import type { JobView } from '../../contract/jobs.js';
import type { JobOutputList, OutputUploadResponse } from '../../contract/outputs.js';
import { startTestHost, type TestHost } from '../support/stack.js';
import { errorOf, runTimer, suffix, TestMachine } from './jobs.fixtures.js';

let t: TestHost;
let alice: ApiClient;
let bob: ApiClient;
let m: TestMachine;
const sha = async (b: Buffer) => (await import('node:crypto')).createHash('sha256').update(b).digest('hex');

beforeAll(async () => {
  t = await startTestHost({ SCHEDULER_POLICY: 'fifo', OUTPUT_MAX_FILES: '3', OUTPUT_MAX_BYTES: '1000' }, { timers: false });
  const admin = await t.as('ops', 'admin');
  alice = await t.as('alice');
  bob = await t.as('bob');
  m = await TestMachine.register(t, admin, `out-${suffix()}`, 'standard', 4); // jobs stay running between tests
});
afterAll(async () => {
  await m?.close();
  await t?.stop();
});

/** A job of alice's, dispatched to and claimed by `m`: returns its id and epoch. */
async function runningJob(): Promise<{ id: string; epoch: number }> {
  const { job_id } = await alice.post<{ job_id: string }>('jobs', { service_required: 'comfyui', payload: {}, requirements: { loras: [] } });
  await m.beat();
  await runTimer(t, 'schedulerTick');
  const got = (await m.drain(2000)).find((d) => d.job_id === job_id);
  if (!got) throw new Error(`job ${job_id} was not dispatched to ${m.id}`);
  const claim = await m.claim(job_id, got.epoch);
  expect(claim.status).toBe(200);
  return { id: job_id, epoch: got.epoch };
}

const ask = (jobId: string, epoch: number, files: { name: string; size_bytes: number; content_type?: string }[]) =>
  m.api.raw('POST', `jobs/${jobId}/outputs/uploads`, { body: { epoch, files: files.map((f) => ({ content_type: 'image/png', ...f })) } });

describe('job outputs', () => {
  it('upload URLs: only for the running epoch, within the limits, write-only', async () => {
    const job = await runningJob();
    expect(await errorOf(await ask(job.id, job.epoch + 1, [{ name: 'a.png', size_bytes: 1 }]))).toMatchObject({ status: 409, message: expect.stringMatching(/stale output upload/) });
    expect(await errorOf(await ask(job.id, job.epoch, [1, 2, 3, 4].map((i) => ({ name: `${i}.png`, size_bytes: 1 }))))).toMatchObject({
      status: 413,
      message: expect.stringMatching(/4 output files; at most 3 .*OUTPUT_MAX_FILES/),
    });
    expect(await errorOf(await ask(job.id, job.epoch, [{ name: 'big.png', size_bytes: 1001 }]))).toMatchObject({ status: 413, message: expect.stringMatching(/OUTPUT_MAX_BYTES/) });
    expect(await errorOf(await ask(job.id, job.epoch, [{ name: '../up.png', size_bytes: 1 }]))).toMatchObject({ status: 400 });
    expect(await errorOf(await ask(job.id, job.epoch, [{ name: 'a.png', size_bytes: 1 }, { name: 'a.png', size_bytes: 1 }]))).toMatchObject({ status: 400, message: expect.stringMatching(/twice/) });
    // Another user cannot ask at all (machine-only route).
    expect((await alice.raw('POST', `jobs/${job.id}/outputs/uploads`, { body: { epoch: job.epoch, files: [{ name: 'a.png', size_bytes: 1, content_type: 'image/png' }] } })).status).toBe(403);

    const res = await ask(job.id, job.epoch, [{ name: 'a.png', size_bytes: 3 }]);
    expect(res.status).toBe(200);
    const { uploads } = (await res.json()) as OutputUploadResponse;
    expect(uploads[0]!.blob_name).toBe(`outputs/alice/${job.id}/e${job.epoch}/a.png`);
    await new BlockBlobClient(uploads[0]!.upload_url).upload(Buffer.from('abc'), 3);
    // Write-only: the same URL cannot read the blob back.
    expect((await fetch(uploads[0]!.upload_url)).status).toBe(403);
  });

  it('outputs are recorded with succeeded, all or nothing, and read back by their owner only', async () => {
    const job = await runningJob();
    const a = Buffer.from('first image');
    const b = Buffer.from('second image!');
    const { uploads } = (await (await ask(job.id, job.epoch, [{ name: 'a.png', size_bytes: a.length }, { name: 'b.png', size_bytes: b.length }])).json()) as OutputUploadResponse;
    await new BlockBlobClient(uploads[0]!.upload_url).upload(a, a.length);
    const outputs = [
      { name: 'a.png', size_bytes: a.length, sha256: await sha(a), content_type: 'image/png' },
      { name: 'b.png', size_bytes: b.length, sha256: await sha(b), content_type: 'image/png' },
    ];

    // b.png is missing: the whole outcome is refused and nothing is recorded.
    const missing = await errorOf(await m.event(job.id, { type: 'succeeded', epoch: job.epoch, outputs }));
    expect(missing).toMatchObject({ status: 400, message: expect.stringMatching(/output b\.png was not uploaded/) });
    let view = await alice.get<JobView>(`jobs/${job.id}`);
    expect([view.status, view.outputs]).toEqual(['running', []]);

    // b.png with other bytes than reported: refused too.
    await new BlockBlobClient(uploads[1]!.upload_url).upload(b.subarray(1), b.length - 1);
    expect(await errorOf(await m.event(job.id, { type: 'succeeded', epoch: job.epoch, outputs }))).toMatchObject({ status: 400, message: expect.stringMatching(/b\.png is 12 bytes in storage, not the 13 reported/) });

    await new BlockBlobClient(uploads[1]!.upload_url).upload(b, b.length);
    expect((await m.event(job.id, { type: 'succeeded', epoch: job.epoch, outputs })).status).toBe(200);
    view = await alice.get<JobView>(`jobs/${job.id}`);
    expect(view.status).toBe('succeeded');
    expect(view.outputs).toEqual(outputs);
    const days = (Date.parse(view.outputs_expire_at!) - Date.now()) / 86_400_000;
    expect(days).toBeGreaterThan(6.9);
    expect(days).toBeLessThanOrEqual(7);

    const list = await alice.get<JobOutputList>(`jobs/${job.id}/outputs`);
    expect(list.epoch).toBe(job.epoch);
    const bodies = await Promise.all(list.outputs.map(async (o) => Buffer.from(await (await fetch(o.url)).arrayBuffer())));
    expect(bodies).toEqual([a, b]);
    expect((await bob.raw('GET', `jobs/${job.id}/outputs`)).status).toBe(404);
    expect((await alice.raw('GET', `jobs/job_00000000000000000000000000/outputs`)).status).toBe(404);

    // The attempt is over: no more upload URLs for it.
    expect(await errorOf(await ask(job.id, job.epoch, [{ name: 'late.png', size_bytes: 1 }]))).toMatchObject({ status: 409 });
  });
});

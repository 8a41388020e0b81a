// The LoRA library over real HTTP: the dev host serving the real triggers on Azurite + cosmosdb-server.
// Both upload flows, validation by content, tenant isolation, quotas, delete, shared LoRAs, the sweeper, OpenAPI.
import { BlockBlobClient } from '@azure/storage-blob';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ApiClient } from '../../api-client/index.js';
import { uploadLora } from '../../cli/commands/loras.js';
import type { CreateSharedUploadResponse, CreateUploadResponse, DirectUploadResponse, SharedLora, UserLora } from '../../contract/loras.js';
import { loraDepsFromClients } from '../../functions/core/loras/deps.js';
import { userLoraBlobName } from '../../functions/core/loras/records.js';
import { newUploadRecord } from '../../functions/core/loras/sessions.js';
import { createLora } from '../../functions/core/loras/store.js';
import { sweepUploads } from '../../functions/core/loras/sweeper.js';
import { badSafetensorsCases, makeSafetensors, rawSafetensors } from '../../testkit/safetensors.js';
import { startTestHost, type TestHost } from '../support/stack.js';
import { blobExists, blobNames, fireBlobCreated, form, jsonOf, rawPost, sha256, uploadMultipart, uploadViaSas, waitSettled } from './loras.fixtures.js';

const MAX_LORAS = 3;
const MAX_BYTES = 1024 ** 3;

let t: TestHost;
let alice: ApiClient;
let bob: ApiClient;
let admin: ApiClient;
let userContainer: string;
let sharedContainer: string;

beforeAll(async () => {
  t = await startTestHost({ USER_MAX_LORAS: String(MAX_LORAS), USER_MAX_LORA_BYTES: String(MAX_BYTES) }, { timers: false });
  alice = await t.as('alice');
  bob = await t.as('bob');
  admin = await t.as('ops-admin', 'admin');
  userContainer = t.settings.USER_LORA_CONTAINER!;
  sharedContainer = t.settings.SHARED_LORA_CONTAINER!;
});
afterAll(async () => {
  if (process.env.DEBUG_HOST) console.log(t?.host.output().slice(-6000));
  await t?.stop();
});

const valid = (dataBytes = 64 * 1024, seed = 1) => makeSafetensors({ dataBytes, seed, metadata: { format: 'pt' } });

describe('multipart upload (POST /api/user-loras/upload)', () => {
  it('streams a valid file into a server-named blob, records its sha256 and answers ready', async () => {
    const user = await t.as('mp-user');
    const bytes = valid(256 * 1024);
    const { status, body } = await uploadMultipart(user, bytes, '../../etc/my lora<v2>|?.safetensors');
    expect(status, JSON.stringify(body)).toBe(201);
    const res = body as unknown as DirectUploadResponse;
    expect(res).toMatchObject({ status: 'ready', size_bytes: bytes.length, sha256: sha256(bytes), reject_reason: null });
    expect(res.flat_file_id).toMatch(/^lora_[0-9a-z]{26}$/);
    expect(res.url).toBe(`/api/user-loras/${res.flat_file_id}`);
    // The client's name is kept only sanitized, as metadata; the blob name is ours, under the owner's prefix.
    expect(res.original_name).toBe('my lora_v2___.safetensors');
    expect(await blobNames(t, userContainer, 'users/mp-user/')).toEqual([userLoraBlobName('mp-user', res.flat_file_id)]);
    const stored = await t.clients.blobService.getContainerClient(userContainer).getBlobClient(userLoraBlobName('mp-user', res.flat_file_id)).downloadToBuffer();
    expect(sha256(stored)).toBe(sha256(bytes));

    const got = await user.get<UserLora>(`user-loras/${res.flat_file_id}`);
    expect(got).toMatchObject({ id: res.flat_file_id, flat_file_id: res.flat_file_id, status: 'ready', sha256: sha256(bytes), size_bytes: bytes.length });
    const list = await user.get<{ loras: UserLora[] }>('user-loras');
    expect(list.loras.map((l) => l.id)).toEqual([res.flat_file_id]);
  });

  it('rejects every crafted bad file with 422 invalid_lora and a readable reason, keeping nothing', async () => {
    const user = await t.as('bad-files');
    const wanted = new Set([
      'empty file',
      'truncated data (incomplete upload)',
      'header length 200 MiB',
      'header length beyond the file',
      'bad JSON',
      'overlapping offsets',
      'hole between tensors',
      'shape x dtype does not match the span',
      'shape overflow (huge dims)',
      'unknown dtype F12',
      'pickle protocol 2 (legacy torch.save)',
      'pickle protocol 4 (framed)',
      'zip (torch.save .pt/.bin)',
      'gzip',
      'plain text',
      'metadata with a non-string value',
    ]);
    const cases = badSafetensorsCases().filter((c) => wanted.has(c.name));
    expect(cases.length).toBe(wanted.size);
    // Header above the 16 MiB validation cap (but a well-formed length field): refused without reading it.
    cases.push({ name: 'header of 20 MiB', bytes: rawSafetensors('{}', 0, 20 * 1024 * 1024), expectCode: 'header_too_large' });
    for (const c of cases) {
      const { status, body } = await uploadMultipart(user, c.bytes, 'innocent.safetensors');
      expect({ name: c.name, status, code: body.error?.code }).toEqual({ name: c.name, status: 422, code: 'invalid_lora' });
      expect((body.error!.details as { reason_code: string }).reason_code, c.name).toBe(c.expectCode);
      expect(body.error!.message.length, c.name).toBeGreaterThan(20);
    }
    expect((await user.get<{ loras: UserLora[] }>('user-loras')).loras).toEqual([]);
    expect(await blobNames(t, userContainer, 'users/bad-files/')).toEqual([]);
  });

  it('answers every malformed request with a 4xx JSON error, never a 500', async () => {
    const user = await t.as('bad-input');
    const cases: { name: string; res: Response; status: number; code: string; match: RegExp }[] = [];
    const add = async (name: string, p: Promise<Response>, status: number, code: string, match: RegExp) => cases.push({ name, res: await p, status, code, match });
    await add('JSON instead of multipart', user.raw('POST', 'user-loras/upload', { body: { file: 'x' } }), 400, 'invalid_request', /multipart\/form-data/);
    await add('no body', user.raw('POST', 'user-loras/upload', { headers: { 'content-type': 'multipart/form-data; boundary=xyz' } }), 400, 'invalid_request', /multipart|file/);
    await add('form without a file part', user.raw('POST', 'user-loras/upload', { body: (() => { const f = new FormData(); f.append('note', 'hi'); return f; })() }), 400, 'invalid_request', /missing the `file` part/);
    await add('file sent as a plain field', user.raw('POST', 'user-loras/upload', { body: (() => { const f = new FormData(); f.append('file', 'not a file'); return f; })() }), 400, 'invalid_request', /must be a file upload/);
    await add('file under another name', user.raw('POST', 'user-loras/upload', { body: form(valid(), 'a.safetensors', {}, 'lora') }), 400, 'invalid_request', /part named `file`/);
    await add('size mismatch', user.raw('POST', 'user-loras/upload', { body: form(valid(), 'a.safetensors', { size_bytes: '12345' }) }), 400, 'invalid_request', /size mismatch/);
    await add('broken multipart framing', user.raw('POST', 'user-loras/upload', { body: '--xyz\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\nabc', headers: { 'content-type': 'multipart/form-data; boundary=xyz' } }), 400, 'invalid_request', /multipart|file/);
    await add('no token', t.anonymous.raw('POST', 'user-loras/upload', { body: form(valid()) }), 401, 'unauthorized', /bearer/i);
    await add('session: missing size', user.raw('POST', 'user-loras', { body: { original_name: 'a.safetensors' } }), 400, 'invalid_request', /size_bytes/);
    await add('session: empty name', user.raw('POST', 'user-loras', { body: { original_name: '', size_bytes: 10 } }), 400, 'invalid_request', /original_name/);
    await add('session: negative size', user.raw('POST', 'user-loras', { body: { original_name: 'a.safetensors', size_bytes: -1 } }), 400, 'invalid_request', /size_bytes/);
    await add('session: over 4 GiB', user.raw('POST', 'user-loras', { body: { original_name: 'a.safetensors', size_bytes: 5 * 1024 ** 3 } }), 400, 'invalid_request', /size_bytes/);
    await add('session: unknown field', user.raw('POST', 'user-loras', { body: { original_name: 'a.safetensors', size_bytes: 10, owner: 'bob' } }), 400, 'invalid_request', /owner|unrecognized/i);
    await add('session: not JSON', user.raw('POST', 'user-loras', { body: 'nope', headers: { 'content-type': 'application/json' } }), 400, 'invalid_request', /JSON/);
    await add('get: malformed id', user.raw('GET', 'user-loras/not-an-id'), 404, 'not_found', /not found/);
    for (const c of cases) {
      const { status, body } = await jsonOf(c.res);
      expect({ name: c.name, status, code: body.error?.code }).toEqual({ name: c.name, status: c.status, code: c.code });
      expect(body.error!.message, c.name).toMatch(c.match);
    }
    expect((await user.get<{ loras: UserLora[] }>('user-loras')).loras).toEqual([]);
    expect(await blobNames(t, userContainer, 'users/bad-input/')).toEqual([]);
  });

  it('413 for a body declared over 100 MB, before reading it', async () => {
    const user = await t.as('too-big');
    const token = (user.options.token as string) ?? '';
    const url = new URL(user.url('user-loras/upload'));
    const headers = { authorization: `Bearer ${token}`, 'content-type': 'multipart/form-data; boundary=b', 'content-length': String(150 * 1024 * 1024) };
    const result = await rawPost(url, headers, (req) => req.write('--b\r\n'));
    expect(result.status).toBe(413);
    expect(JSON.parse(result.body).error.code).toBe('too_large');
    expect(JSON.parse(result.body).error.message).toMatch(/POST \/api\/user-loras/);
  });
});

describe('large-file flow (POST /api/user-loras + SAS PUT + BlobCreated)', () => {
  it('issues a short-lived create/write SAS for exactly one server-named blob; the trigger validates it to ready', async () => {
    const bytes = valid(3 * 1024 * 1024, 7);
    const before = Date.now();
    const session = await alice.post<CreateUploadResponse>('user-loras', { original_name: 'C:\\loras\\alice-style.safetensors', size_bytes: bytes.length });
    expect(session.status).toBe('uploading');
    const expires = Date.parse(session.expires_at);
    expect(expires).toBeGreaterThan(before);
    expect(expires).toBeLessThanOrEqual(before + 61 * 60_000);
    const sasUrl = new URL(session.upload_url);
    expect(decodeURIComponent(sasUrl.pathname)).toContain(`${userContainer}/users/alice/${session.flat_file_id}.safetensors`);
    expect(sasUrl.searchParams.get('sp')).toBe('cw');
    expect(sasUrl.searchParams.get('sr')).toBe('b');

    const pending = await alice.get<UserLora>(`user-loras/${session.flat_file_id}`);
    expect(pending).toMatchObject({ status: 'uploading', original_name: 'alice-style.safetensors', sha256: null });

    // The SAS cannot read, and cannot write any other blob.
    const blob = new BlockBlobClient(session.upload_url);
    await blob.uploadData(bytes, { blockSize: 1024 * 1024, concurrency: 2 });
    await expect(blob.downloadToBuffer()).rejects.toMatchObject({ statusCode: 403 });
    const other = new URL(session.upload_url);
    other.pathname = other.pathname.replace(session.flat_file_id, 'lora_00000000000000000000000000');
    await expect(new BlockBlobClient(other.toString()).uploadData(bytes)).rejects.toMatchObject({ statusCode: 403 });

    const done = await waitSettled(alice, session.flat_file_id);
    expect(done).toMatchObject({ status: 'ready', sha256: sha256(bytes), size_bytes: bytes.length, reject_reason: null });

    // Redelivery of the same event (and a late duplicate) changes nothing.
    const name = userLoraBlobName('alice', session.flat_file_id);
    await fireBlobCreated(t, userContainer, name);
    await fireBlobCreated(t, userContainer, name);
    const again = await alice.get<UserLora>(`user-loras/${session.flat_file_id}`);
    expect(again).toEqual(done);
    expect(await blobExists(t, userContainer, name)).toBe(true);
  });

  it('rejects a bad file with a reason and deletes its blob; a size different from the declared one is rejected too', async () => {
    const user = await t.as('sas-bad');
    const pickle = badSafetensorsCases().find((c) => c.name === 'pickle protocol 4 (framed)')!.bytes;
    const s1 = await uploadViaSas(user, pickle, 'looks-fine.safetensors');
    const r1 = await waitSettled(user, s1.flat_file_id);
    expect(r1.status).toBe('rejected');
    expect(r1.reject_reason).toMatch(/pickle/i);
    expect(r1.sha256).toBeNull();

    const bytes = valid(32 * 1024, 3);
    const s2 = await uploadViaSas(user, bytes, 'short.safetensors', bytes.length + 1000);
    const r2 = await waitSettled(user, s2.flat_file_id);
    expect(r2.status).toBe('rejected');
    expect(r2.reject_reason).toMatch(/size mismatch/);

    await expect.poll(() => blobNames(t, userContainer, 'users/sas-bad/')).toEqual([]);
    // Rejected LoRAs hold no quota and stay listed with their reason until deleted.
    const list = await user.get<{ loras: UserLora[] }>('user-loras');
    expect(list.loras.map((l) => l.status)).toEqual(['rejected', 'rejected']);
  });

  it('a blob written after its record was deleted is removed as an orphan', async () => {
    const user = await t.as('orphan');
    const bytes = valid(16 * 1024, 4);
    const session = await user.post<CreateUploadResponse>('user-loras', { original_name: 'o.safetensors', size_bytes: bytes.length });
    expect((await user.delete<{ success: boolean }>(`user-loras/${session.flat_file_id}`)).success).toBe(true);
    await new BlockBlobClient(session.upload_url).uploadData(bytes);
    await expect.poll(() => blobNames(t, userContainer, 'users/orphan/'), { timeout: 10_000 }).toEqual([]);
  });

  it('the upload sweeper removes sessions that expired without a file, and validates expired ones whose file arrived', async () => {
    const user = await t.as('sweeper');
    const abandoned = await user.post<CreateUploadResponse>('user-loras', { original_name: 'never.safetensors', size_bytes: 1000 });
    // The timer is registered and runs (nothing has expired yet, so nothing changes).
    const res = await fetch(`${t.host.url}/admin/functions/uploadSweeper`, { method: 'POST', body: '{}', headers: { 'x-functions-key': t.host.adminKey } });
    expect(res.status).toBe(202);
    expect((await user.get<UserLora>(`user-loras/${abandoned.flat_file_id}`)).status).toBe('uploading');

    // Two hours later (the core with a moved clock, over the same stores).
    const deps = loraDepsFromClients(t.clients, { now: () => Date.now() + 2 * 3600_000 });
    const report = await sweepUploads(deps);
    expect(report.expired).toBeGreaterThanOrEqual(1);
    expect((await user.raw('GET', `user-loras/${abandoned.flat_file_id}`)).status).toBe(404);
    expect((await user.get<{ loras: UserLora[] }>('user-loras')).loras).toEqual([]);

    // A session whose file arrived but whose event never came (a container the dev host does not watch stands in for
    // the lost event): the sweeper validates it instead of dropping it.
    const unwatched = `lost-events-${Date.now().toString(36)}`;
    await t.clients.blobService.getContainerClient(unwatched).createIfNotExists();
    const bytes = valid(8 * 1024, 50);
    const doc = { ...newUploadRecord(loraDepsFromClients(t.clients), { kind: 'user', tenantId: 'sweeper' }, { originalName: 'late.safetensors', declaredBytes: bytes.length, flow: 'sas' }), container: unwatched };
    await createLora(deps, doc);
    await t.clients.blobService.getContainerClient(unwatched).getBlockBlobClient(doc.blob_name).uploadData(bytes);
    expect((await sweepUploads(deps)).validated).toBe(1);
    expect(await user.get<UserLora>(`user-loras/${doc.id}`)).toMatchObject({ status: 'ready', sha256: sha256(bytes) });
    await user.delete(`user-loras/${doc.id}`);
    expect(await blobExists(t, unwatched, doc.blob_name)).toBe(false);
  });
});

describe('tenant isolation', () => {
  it("another user's LoRA is a 404 on every path and never appears in their list", async () => {
    const bytes = valid(8 * 1024, 11);
    const { body } = await uploadMultipart(alice, bytes, 'secret.safetensors');
    const id = (body as unknown as DirectUploadResponse).flat_file_id;
    expect((await bob.raw('GET', `user-loras/${id}`)).status).toBe(404);
    const del = await jsonOf(await bob.raw('DELETE', `user-loras/${id}`));
    expect(del.status).toBe(404);
    expect(del.body.error?.code).toBe('not_found');
    expect((await bob.get<{ loras: UserLora[] }>('user-loras')).loras.map((l) => l.id)).not.toContain(id);
    // Bob cannot use it in a job either.
    const job = await jsonOf(await bob.raw('POST', 'jobs', { body: { service_required: 'comfyui', requirements: { loras: [{ type: 'user', flat_file_id: id }] } } }));
    expect(job.status).toBe(422);
    expect(job.body.error?.code).toBe('invalid_lora');
    // Still there for Alice.
    expect((await alice.get<UserLora>(`user-loras/${id}`)).status).toBe('ready');
  });
});

describe('delete', () => {
  it('removes the record and the blob; deleting again is a harmless 404', async () => {
    const user = await t.as('deleter');
    const bytes = valid(8 * 1024, 12);
    const { body } = await uploadMultipart(user, bytes);
    const id = (body as unknown as DirectUploadResponse).flat_file_id;
    const name = userLoraBlobName('deleter', id);
    expect(await blobExists(t, userContainer, name)).toBe(true);
    expect(await user.delete(`user-loras/${id}`)).toEqual({ success: true });
    expect(await blobExists(t, userContainer, name)).toBe(false);
    expect((await user.raw('GET', `user-loras/${id}`)).status).toBe(404);
    expect((await user.raw('DELETE', `user-loras/${id}`)).status).toBe(404);
    // An upload in progress can be cancelled the same way.
    const s = await user.post<CreateUploadResponse>('user-loras', { original_name: 'x.safetensors', size_bytes: 100 });
    expect(await user.delete(`user-loras/${s.flat_file_id}`)).toEqual({ success: true });
    expect((await user.get<{ loras: UserLora[] }>('user-loras')).loras).toEqual([]);
  });
});

describe('quotas', () => {
  it('counts LoRAs, including uploads in progress, and answers 429 with the numbers', async () => {
    const user = await t.as('quota-count');
    const ids: string[] = [];
    for (let i = 0; i < 2; i++) {
      const { status, body } = await uploadMultipart(user, valid(4096, 20 + i), `q${i}.safetensors`);
      expect(status).toBe(201);
      ids.push((body as unknown as DirectUploadResponse).flat_file_id);
    }
    const pending = await user.post<CreateUploadResponse>('user-loras', { original_name: 'q2.safetensors', size_bytes: 4096 });
    for (const attempt of [
      user.raw('POST', 'user-loras', { body: { original_name: 'q3.safetensors', size_bytes: 4096 } }),
      user.raw('POST', 'user-loras/upload', { body: form(valid(4096, 30)) }),
    ]) {
      const { status, body } = await jsonOf(await attempt);
      expect(status).toBe(429);
      expect(body.error?.code).toBe('quota_exceeded');
      expect(body.error?.message).toMatch(/3 of 3 LoRAs/);
      expect(body.error?.details).toMatchObject({ max_loras: MAX_LORAS, used_loras: 3 });
    }
    // Freeing a slot (cancelling the pending upload) lets the next one in.
    await user.delete(`user-loras/${pending.flat_file_id}`);
    expect((await uploadMultipart(user, valid(4096, 31))).status).toBe(201);
  });

  it('counts bytes at the declared size when an upload starts', async () => {
    const user = await t.as('quota-bytes');
    const { status, body } = await jsonOf(await user.raw('POST', 'user-loras', { body: { original_name: 'huge.safetensors', size_bytes: MAX_BYTES + 1 } }));
    expect(status).toBe(429);
    expect(body.error?.message).toMatch(/storage quota exceeded: 0 bytes of 1\.0 GiB used, this file needs 1\.0 GiB/);
    const first = await user.post<CreateUploadResponse>('user-loras', { original_name: 'a.safetensors', size_bytes: 700 * 1024 ** 2 });
    const second = await jsonOf(await user.raw('POST', 'user-loras', { body: { original_name: 'b.safetensors', size_bytes: 400 * 1024 ** 2 } }));
    expect(second.status).toBe(429);
    expect(second.body.error?.details).toMatchObject({ used_bytes: 700 * 1024 ** 2, needed_bytes: 400 * 1024 ** 2, max_bytes: MAX_BYTES });
    await user.delete(`user-loras/${first.flat_file_id}`);
  });
});

describe('shared LoRAs (/api/shared-loras)', () => {
  it('admins upload (multipart and SAS), list, read and delete them by filename; users only read the ready ones (403 otherwise)', async () => {
    const bytes = valid(16 * 1024, 40);
    const up = await uploadMultipart(admin, bytes, 'detail-tweaker.safetensors', {}, 'shared-loras/upload');
    expect(up.status).toBe(201);
    expect(up.body).toMatchObject({ filename: 'detail-tweaker.safetensors', status: 'ready', sha256: sha256(bytes), size_bytes: bytes.length });
    expect(await blobExists(t, sharedContainer, 'shared/detail-tweaker.safetensors')).toBe(true);

    const dup = await uploadMultipart(admin, bytes, 'detail-tweaker.safetensors', {}, 'shared-loras/upload');
    expect(dup.status).toBe(409);
    expect(dup.body.error?.code).toBe('conflict');
    const badName = await uploadMultipart(admin, bytes, 'no spaces allowed.bin', {}, 'shared-loras/upload');
    expect(badName.status).toBe(400);
    expect(badName.body.error?.message).toMatch(/bad filename/);
    const badSession = await jsonOf(await admin.raw('POST', 'shared-loras', { body: { filename: '../x.safetensors', size_bytes: 10 } }));
    expect(badSession.status).toBe(400);

    const big = valid(2 * 1024 * 1024, 41);
    const session = await admin.post<CreateSharedUploadResponse>('shared-loras', { filename: 'style-xl.safetensors', size_bytes: big.length });
    expect(session.status).toBe('uploading');
    await new BlockBlobClient(session.upload_url).uploadData(big, { blockSize: 1024 * 1024 });
    await expect
      .poll(async () => (await admin.get<SharedLora>('shared-loras/style-xl.safetensors')).status, { timeout: 15_000 })
      .toBe('ready');
    expect((await admin.get<SharedLora>('shared-loras/style-xl.safetensors')).sha256).toBe(sha256(big));

    const list = await admin.get<{ loras: SharedLora[] }>('shared-loras');
    expect(list.loras.map((l) => l.filename).sort()).toEqual(['detail-tweaker.safetensors', 'style-xl.safetensors']);

    // Users: no writes; they read the ready shared LoRAs (to pick them for jobs) and may name them by filename.
    const userList = await alice.get<{ loras: SharedLora[] }>('shared-loras');
    expect(userList.loras.map((l) => [l.filename, l.status]).sort()).toEqual([
      ['detail-tweaker.safetensors', 'ready'],
      ['style-xl.safetensors', 'ready'],
    ]);
    for (const [method, path, body] of [
      ['POST', 'shared-loras', { filename: 'mine.safetensors', size_bytes: 10 }],
      ['DELETE', 'shared-loras/detail-tweaker.safetensors', undefined],
    ] as const) {
      const r = await jsonOf(await alice.raw(method, path, body ? { body } : {}));
      expect({ method, path, status: r.status, code: r.body.error?.code }).toEqual({ method, path, status: 403, code: 'forbidden' });
    }
    const userUpload = await uploadMultipart(alice, bytes, 'x.safetensors', {}, 'shared-loras/upload');
    expect(userUpload.status).toBe(403);

    const own = await uploadMultipart(alice, valid(4096, 42), 'with-shared.safetensors');
    const job = await jsonOf(
      await alice.raw('POST', 'jobs', {
        body: {
          service_required: 'comfyui',
          requirements: {
            loras: [
              { type: 'user', flat_file_id: (own.body as unknown as DirectUploadResponse).flat_file_id },
              { type: 'shared', filename: 'detail-tweaker.safetensors' },
            ],
          },
        },
      }),
    );
    expect(job.status).toBe(201);

    expect(await admin.delete('shared-loras/detail-tweaker.safetensors')).toEqual({ success: true });
    expect(await blobExists(t, sharedContainer, 'shared/detail-tweaker.safetensors')).toBe(false);
    expect((await admin.raw('GET', 'shared-loras/detail-tweaker.safetensors')).status).toBe(404);
    expect((await admin.raw('DELETE', 'shared-loras/detail-tweaker.safetensors')).status).toBe(404);
    // The filename is free again.
    expect((await uploadMultipart(admin, bytes, 'detail-tweaker.safetensors', {}, 'shared-loras/upload')).status).toBe(201);
  });
});

describe('CLI (lora-router upload | loras | rm)', () => {
  const cli = async (token: string, ...args: string[]) => {
    const { execFile } = await import('node:child_process');
    return new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      execFile(process.execPath, ['dist/cli/index.js', '--api', t.apiUrl, '--token', token, ...args], { cwd: process.cwd() }, (err, stdout, stderr) =>
        resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
      );
    });
  };

  it('uploads by either flow and waits for the verdict, lists and removes', async () => {
    const { mkdtempSync, writeFileSync, rmSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const dir = mkdtempSync(join(tmpdir(), 'lora-cli-'));
    const user = await t.as('cli-user');
    const token = user.options.token!;
    try {
      const small = valid(64 * 1024, 60);
      writeFileSync(join(dir, 'small.safetensors'), small);
      const viaSas = valid(128 * 1024, 61);
      writeFileSync(join(dir, 'sas.safetensors'), viaSas);
      writeFileSync(join(dir, 'evil.safetensors'), Buffer.from([0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e]));
      // Two CLI processes at once (process start-up dominates), and the same upload code in-process for the SAS flow.
      const [a, c, b] = await Promise.all([
        cli(token, 'upload', join(dir, 'small.safetensors'), '--json'),
        cli(token, 'upload', join(dir, 'evil.safetensors'), '--flow', 'sas'),
        uploadLora(user, join(dir, 'sas.safetensors'), { flow: 'sas' }),
      ]);
      expect(a.code, a.stderr).toBe(0);
      expect(JSON.parse(a.stdout)).toMatchObject({ flow: 'multipart', status: 'ready', sha256: sha256(small) });
      expect(c.code).toBe(2);
      expect(c.stdout).toMatch(/^lora_[0-9a-z]{26} rejected: .*pickle/i);
      expect(b).toMatchObject({ flow: 'sas', status: 'ready', sha256: sha256(viaSas), size_bytes: viaSas.length });

      const list = await cli(token, 'loras');
      expect(list.code).toBe(0);
      expect(list.stdout.split('\n').filter((l) => l.startsWith('lora_'))).toHaveLength(3); // two ready, one rejected
      const id = JSON.parse(a.stdout).id as string;
      expect((await cli(token, 'rm', id)).stdout).toBe(`deleted ${id}\n`);
      expect((await user.raw('GET', `user-loras/${id}`)).status).toBe(404);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('openapi', () => {
  it('documents every LoRA route', async () => {
    const doc = await t.anonymous.get<{ paths: Record<string, Record<string, unknown>> }>('openapi.json');
    expect(Object.keys(doc.paths['/api/user-loras/upload'] ?? {})).toEqual(['post']);
    expect(Object.keys(doc.paths['/api/user-loras'] ?? {}).sort()).toEqual(['get', 'post']);
    expect(Object.keys(doc.paths['/api/user-loras/{id}'] ?? {}).sort()).toEqual(['delete', 'get']);
    expect(Object.keys(doc.paths['/api/shared-loras'] ?? {}).sort()).toEqual(['get', 'post']);
    expect(Object.keys(doc.paths['/api/shared-loras/upload'] ?? {})).toEqual(['post']);
    expect(Object.keys(doc.paths['/api/shared-loras/{filename}'] ?? {}).sort()).toEqual(['delete', 'get']);
  });
});

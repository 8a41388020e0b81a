// Issue 18 item 9: rejected LoRA records (and abandoned upload sessions) expire, and GET /api/user-loras is paged.
// Real dev host on Azurite + cosmosdb-server. cosmosdb-server stores `ttl` but never expires items, so expiry is shown
// through what the code does on its own (reads and lists leave expired records out; the sweeper deletes them with any
// blob), with the core run on a moved clock over the same stores.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ApiClient } from '../../api-client/index.js';
import { allUserLoras } from '../../contract/loras-paging.js';
import type { UserLora, UserLoraList } from '../../contract/loras.js';
import { loraDepsFromClients } from '../../functions/core/loras/deps.js';
import { getUserLora } from '../../functions/core/loras/library.js';
import type { LoraDoc } from '../../functions/core/loras/records.js';
import { createSharedUploadSession, newUploadRecord } from '../../functions/core/loras/sessions.js';
import { createLora } from '../../functions/core/loras/store.js';
import { sweepUploads } from '../../functions/core/loras/sweeper.js';
import { badSafetensorsCases } from '../../testkit/safetensors.js';
import { startTestHost, type TestHost } from '../support/stack.js';
import { blobNames, jsonOf, uploadViaSas, waitSettled } from './loras.fixtures.js';

const RETENTION_HOURS = 6;
let t: TestHost;

beforeAll(async () => {
  t = await startTestHost({ REJECTED_LORA_RETENTION_HOURS: String(RETENTION_HOURS), UPLOAD_SESSION_MINUTES: '30', USER_MAX_LORAS: '50' }, { timers: false });
});
afterAll(async () => {
  await t?.stop();
});

const rawDoc = async (id: string, owner: string): Promise<LoraDoc | undefined> => (await t.clients.cosmosContainers.loras.item(id, owner).read<LoraDoc>()).resource;

describe('rejected and abandoned LoRA records expire', () => {
  it('the loras container is created with defaultTtl -1, so per-item ttl works in Cosmos', async () => {
    const { resource } = await t.clients.cosmosContainers.loras.read();
    expect(resource?.defaultTtl).toBe(-1);
  });

  it('a rejected SAS upload gets a ttl, drops out of reads and lists when it passes, and the sweeper deletes it', async () => {
    const user = await t.as('ttl-rejected');
    const pickle = badSafetensorsCases().find((c) => c.name === 'pickle protocol 4 (framed)')!.bytes;
    const session = await uploadViaSas(user, pickle, 'bad.safetensors');
    const rejected = await waitSettled(user, session.flat_file_id);
    expect(rejected.status).toBe('rejected');

    const stored = await rawDoc(session.flat_file_id, 'ttl-rejected');
    expect(stored?.ttl).toBe(RETENTION_HOURS * 3600);
    expect(Date.parse(stored!.retain_until!) - Date.parse(stored!.updated_at)).toBe(RETENTION_HOURS * 3600_000);
    // The blob goes right after the rejection is stored (the status can be seen a moment before).
    await expect.poll(() => blobNames(t, t.settings.USER_LORA_CONTAINER!, 'users/ttl-rejected/')).toEqual([]);

    // Still there (with its reason) an hour before it runs out; gone an hour after.
    const before = loraDepsFromClients(t.clients, { now: () => Date.parse(stored!.retain_until!) - 3600_000 });
    const after = loraDepsFromClients(t.clients, { now: () => Date.parse(stored!.retain_until!) + 3600_000 });
    expect((await getUserLora(before, 'ttl-rejected', session.flat_file_id)).reject_reason).toMatch(/pickle/i);
    await expect(getUserLora(after, 'ttl-rejected', session.flat_file_id)).rejects.toMatchObject({ code: 'not_found' });
    expect((await sweepUploads(before)).retired).toBe(0);
    expect(await rawDoc(session.flat_file_id, 'ttl-rejected')).toBeDefined();
    expect((await sweepUploads(after)).retired).toBeGreaterThanOrEqual(1);
    expect(await rawDoc(session.flat_file_id, 'ttl-rejected')).toBeUndefined();
    expect((await user.get<UserLoraList>('user-loras')).loras).toEqual([]);
  });

  it('an upload session carries a ttl (the backstop should the sweeper not run)', async () => {
    const user = await t.as('ttl-session');
    const s = await user.post<{ flat_file_id: string }>('user-loras', { original_name: 'never.safetensors', size_bytes: 1000 });
    const stored = await rawDoc(s.flat_file_id, 'ttl-session');
    expect(stored?.ttl).toBe(30 * 60 + RETENTION_HOURS * 3600);
    const late = loraDepsFromClients(t.clients, { now: () => Date.parse(stored!.retain_until!) + 1000 });
    await expect(getUserLora(late, 'ttl-session', s.flat_file_id)).rejects.toMatchObject({ code: 'not_found' });
  });

  it('a shared filename held by an expired rejected record can be uploaded again (the emulator never removes it)', async () => {
    const deps = loraDepsFromClients(t.clients);
    const filename = `expired-${Date.now().toString(36)}.safetensors`;
    const doc = newUploadRecord(deps, { kind: 'shared', filename }, { originalName: filename, declaredBytes: 10, flow: 'sas' });
    const stored = (await createLora(deps, { ...doc, status: 'rejected', reject_reason: 'bad', upload_expires_at: null }))!;
    const after = loraDepsFromClients(t.clients, { now: () => Date.parse(stored.retain_until!) + 1000 });
    const session = await createSharedUploadSession(after, { filename, size_bytes: 100 });
    expect(session).toMatchObject({ filename, status: 'uploading' });
    expect((await rawDoc(doc.id, doc.owner_id))?.status).toBe('uploading');
  });
});

describe('GET /api/user-loras pages', () => {
  it('follows continuation through every record, newest first, without repeats; the CLI/web helper collects them all', async () => {
    const owner = 'paged-user';
    const user = await t.as(owner);
    const deps = loraDepsFromClients(t.clients);
    const ids: string[] = [];
    for (let i = 0; i < 7; i++) {
      const at = Date.parse('2026-01-01T00:00:00Z') + i * 60_000;
      const doc = newUploadRecord({ ...deps, now: () => at }, { kind: 'user', tenantId: owner }, { originalName: `p${i}.safetensors`, declaredBytes: 10, flow: 'sas' });
      await createLora(deps, { ...doc, status: 'ready', sha256: 'a'.repeat(64), upload_expires_at: null });
      ids.unshift(doc.id); // newest first
    }
    expect(await rawDoc(ids[0]!, owner)).not.toHaveProperty('ttl'); // a ready record is kept until deleted
    const seen: string[] = [];
    let continuation: string | null = null;
    let pages = 0;
    do {
      const page: UserLoraList = await user.get<UserLoraList>(`user-loras?limit=3${continuation ? `&continuation=${encodeURIComponent(continuation)}` : ''}`);
      expect(page.loras.length).toBeLessThanOrEqual(3);
      seen.push(...page.loras.map((l) => l.id));
      continuation = page.continuation;
      pages += 1;
    } while (continuation !== null && pages < 10);
    expect(pages).toBeGreaterThanOrEqual(3);
    expect(seen).toEqual(ids);
    const all: UserLora[] = await allUserLoras((path) => user.get<UserLoraList>(path), 2);
    expect(all.map((l) => l.id)).toEqual(ids);
    // Without paging parameters: the first page (default size), which here holds them all.
    expect((await user.get<UserLoraList>('user-loras')).loras.map((l) => l.id)).toEqual(ids);
  });

  it('answers 400 with a clear message for bad limit and continuation values', async () => {
    const user = await t.as('paged-bad');
    const forged = Buffer.from(JSON.stringify({ v: 2, c: 'x' })).toString('base64url');
    for (const [q, pattern] of [
      ['limit=0', /limit must be an integer between 1 and 1000/],
      ['limit=1001', /limit must be an integer between 1 and 1000/],
      ['limit=ten', /limit must be an integer/],
      ['limit=-1', /limit must be an integer/],
      ['continuation=%%%', /continuation/],
      ['continuation=not*base64', /continuation/],
      [`continuation=${forged}`, /continuation must be the `continuation` value of a previous page/],
      [`continuation=${Buffer.from('garbage').toString('base64url')}`, /continuation/],
    ] as const) {
      const { status, body } = await jsonOf(await user.raw('GET', `user-loras?${q}`));
      expect(status, q).toBe(400);
      expect(body.error?.code, q).toBe('invalid_request');
      expect(body.error?.message, q).toMatch(pattern);
    }
  });
});

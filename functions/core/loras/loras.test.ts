// Host-free parts of the LoRA library: naming, event parsing, quota arithmetic, multipart header checks, verdicts.
import { describe, expect, it } from 'vitest';
import { MAX_DIRECT_UPLOAD_BYTES } from '../../../contract/loras.js';
import { ApiError } from '../errors.js';
import { parseBlobCreatedEvent } from './blob-events.js';
import { normalizeEtag } from './blob-io.js';
import { checkMultipartHeaders, MULTIPART_OVERHEAD_BYTES } from './direct-upload.js';
import { locateRecord } from './naming.js';
import { checkQuota, holdsQuota } from './quota.js';
import { SHARED_OWNER, sharedLoraBlobName, userLoraBlobName, type LoraDoc } from './records.js';
import { applyVerdict } from './verdict.js';

const cfg = { userLoraContainer: 'user-loras', sharedLoraContainer: 'shared-loras' };
const id = 'lora_0123456789abcdefghjkmnpqrs';

describe('naming', () => {
  it('maps generated blob names back to their record and ignores anything else', () => {
    expect(locateRecord(cfg, 'user-loras', userLoraBlobName('alice', id))).toEqual({ kind: 'user', id, owner: 'alice' });
    expect(locateRecord(cfg, 'shared-loras', sharedLoraBlobName('style.safetensors'))).toEqual({
      kind: 'shared',
      id: 'shared:style.safetensors',
      owner: SHARED_OWNER,
    });
    for (const [container, name] of [
      ['user-loras', `users/alice/${id}.bin`],
      ['user-loras', `users/alice/nested/${id}.safetensors`],
      ['user-loras', `users/al ice/${id}.safetensors`],
      ['user-loras', 'users/alice/lora_short.safetensors'],
      ['shared-loras', 'shared/../x.safetensors'],
      ['shared-loras', 'other/style.safetensors'],
      ['elsewhere', userLoraBlobName('alice', id)],
    ] as const) {
      expect(locateRecord(cfg, container, name), `${container}/${name}`).toBeNull();
    }
  });
});

describe('BlobCreated events', () => {
  it('reads the container and blob from the subject, or from the URL (Azure and Azurite styles)', () => {
    expect(
      parseBlobCreatedEvent({
        eventType: 'Microsoft.Storage.BlobCreated',
        subject: `/blobServices/default/containers/user-loras/blobs/users/alice/${id}.safetensors`,
        data: { eTag: '0x8D' },
      }),
    ).toEqual({ container: 'user-loras', blobName: `users/alice/${id}.safetensors`, etag: '0x8D' });
    expect(parseBlobCreatedEvent({ data: { url: 'https://acct.blob.core.windows.net/shared-loras/shared/a.safetensors' } })).toEqual({
      container: 'shared-loras',
      blobName: 'shared/a.safetensors',
      etag: undefined,
    });
    expect(parseBlobCreatedEvent({ data: { url: 'http://127.0.0.1:10000/devstoreaccount1/shared-loras/shared/a.safetensors' } })?.container).toBe('shared-loras');
    expect(parseBlobCreatedEvent({ eventType: 'Microsoft.Storage.BlobDeleted', subject: '/blobServices/default/containers/c/blobs/b' })).toBeNull();
    expect(parseBlobCreatedEvent(null)).toBeNull();
    expect(parseBlobCreatedEvent('nope')).toBeNull();
  });

  it('compares ETags quoted or not', () => {
    expect(normalizeEtag('"0x8DABC"')).toBe(normalizeEtag('0x8DABC'));
    expect(normalizeEtag(null)).toBe('');
  });
});

describe('quotas', () => {
  const limits = { maxLoras: 3, maxBytes: 1000 };
  it('refuses one more LoRA over the count, or bytes over the budget, with the numbers', () => {
    expect(checkQuota(limits, { count: 2, bytes: 500 }, 500)).toBeNull();
    const count = checkQuota(limits, { count: 3, bytes: 0 }, 1);
    expect(count?.message).toMatch(/3 of 3 LoRAs used/);
    const bytes = checkQuota(limits, { count: 1, bytes: 600 }, 401);
    expect(bytes?.message).toMatch(/600 bytes of 1000 bytes used, this file needs 401 bytes/);
    expect(bytes?.details).toEqual({ max_loras: 3, used_loras: 1, max_bytes: 1000, used_bytes: 600, needed_bytes: 401 });
  });

  it('counts ready, validating and unexpired uploads; not rejected ones or expired sessions', () => {
    const now = Date.parse('2026-01-01T12:00:00Z');
    expect(holdsQuota({ status: 'ready', upload_expires_at: null }, now)).toBe(true);
    expect(holdsQuota({ status: 'validating', upload_expires_at: null }, now)).toBe(true);
    expect(holdsQuota({ status: 'uploading', upload_expires_at: '2026-01-01T12:30:00Z' }, now)).toBe(true);
    expect(holdsQuota({ status: 'uploading', upload_expires_at: '2026-01-01T11:59:59Z' }, now)).toBe(false);
    expect(holdsQuota({ status: 'rejected', upload_expires_at: null }, now)).toBe(false);
  });
});

describe('multipart request checks', () => {
  const code = (f: () => void): string | undefined => {
    try {
      f();
    } catch (err) {
      return err instanceof ApiError ? `${err.status} ${err.code}` : String(err);
    }
    return undefined;
  };
  it('needs multipart/form-data with a boundary, and refuses a declared body over the limit before reading it', () => {
    expect(code(() => checkMultipartHeaders({ contentType: 'multipart/form-data; boundary=x', contentLength: 1000 }))).toBeUndefined();
    expect(code(() => checkMultipartHeaders({ contentType: 'multipart/form-data; boundary=x', contentLength: null }))).toBeUndefined();
    expect(code(() => checkMultipartHeaders({ contentType: 'application/json', contentLength: 10 }))).toBe('400 invalid_request');
    expect(code(() => checkMultipartHeaders({ contentType: 'multipart/form-data', contentLength: 10 }))).toBe('400 invalid_request');
    expect(code(() => checkMultipartHeaders({ contentType: null, contentLength: 10 }))).toBe('400 invalid_request');
    const limit = MAX_DIRECT_UPLOAD_BYTES + MULTIPART_OVERHEAD_BYTES;
    expect(code(() => checkMultipartHeaders({ contentType: 'multipart/form-data; boundary=x', contentLength: limit }))).toBeUndefined();
    expect(code(() => checkMultipartHeaders({ contentType: 'multipart/form-data; boundary=x', contentLength: limit + 1 }))).toBe('413 too_large');
  });
});

describe('verdicts', () => {
  const doc: LoraDoc = {
    id,
    owner_id: 'alice',
    kind: 'user',
    key: id,
    container: 'user-loras',
    blob_name: userLoraBlobName('alice', id),
    original_name: 'a.safetensors',
    size_bytes: 100,
    sha256: null,
    status: 'validating',
    reject_reason: null,
    created_at: '2026-01-01T00:00:00.000Z',
    updated_at: '2026-01-01T00:00:00.000Z',
    upload_expires_at: '2026-01-01T01:00:00.000Z',
    upload_flow: 'sas',
  };
  it('ready records the real size, sha256 and validated ETag and ends the session', () => {
    const ready = applyVerdict(doc, { ok: true, sha256: 'ab'.repeat(32), size: 123, etag: '"0x1"' }, Date.parse('2026-01-01T00:05:00Z'));
    expect(ready).toMatchObject({ status: 'ready', sha256: 'ab'.repeat(32), size_bytes: 123, validated_blob_etag: '0x1', upload_expires_at: null, reject_reason: null });
  });
  it('rejected keeps the reason and code, no sha256', () => {
    const rejected = applyVerdict(doc, { ok: false, code: 'pickle', error: 'invalid_lora', reason: 'a pickle', size: 50 }, 0);
    expect(rejected).toMatchObject({ status: 'rejected', sha256: null, reject_reason: 'a pickle', reject_code: 'pickle', size_bytes: 50, upload_expires_at: null });
  });
});

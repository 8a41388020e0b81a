// Starting an upload: quota on the declared size, a record in `uploading`, and (for the large-file flow) a short-lived
// SAS URL that can create/write exactly one blob. Blob names are ours, never the client's.
import { newLoraId, sanitizeOriginalName } from '../../../contract/ids.js';
import type {
  CreateSharedUploadRequest,
  CreateSharedUploadResponse,
  CreateUploadRequest,
  CreateUploadResponse,
} from '../../../contract/loras.js';
import { conflict, quotaExceeded } from '../errors.js';
import { deleteBlobIfExists } from './blob-io.js';
import type { LoraDeps } from './deps.js';
import { checkUserQuota, holdsQuota } from './quota.js';
import { SHARED_OWNER, sharedLoraBlobName, sharedLoraDocId, userLoraBlobName, type LoraDoc } from './records.js';
import { createLora, deleteLora, readLora } from './store.js';

export type UploadTarget = { kind: 'user'; tenantId: string } | { kind: 'shared'; filename: string };

/** A fresh `uploading` record for the target; `declaredBytes` holds quota until the real size is known. */
export function newUploadRecord(
  deps: LoraDeps,
  target: UploadTarget,
  opts: { originalName: string; declaredBytes: number; flow: 'direct' | 'sas' },
): LoraDoc {
  const now = deps.now();
  const at = new Date(now).toISOString();
  const expires = new Date(now + deps.config.uploadSessionMinutes * 60_000).toISOString();
  const base = {
    size_bytes: opts.declaredBytes,
    sha256: null,
    status: 'uploading' as const,
    reject_reason: null,
    reject_code: null,
    created_at: at,
    updated_at: at,
    upload_expires_at: expires,
    validated_blob_etag: null,
    upload_flow: opts.flow,
  };
  if (target.kind === 'user') {
    const id = newLoraId();
    return {
      ...base,
      id,
      owner_id: target.tenantId,
      kind: 'user',
      key: id,
      container: deps.config.userLoraContainer,
      blob_name: userLoraBlobName(target.tenantId, id),
      original_name: sanitizeOriginalName(opts.originalName),
    };
  }
  return {
    ...base,
    id: sharedLoraDocId(target.filename),
    owner_id: SHARED_OWNER,
    kind: 'shared',
    key: target.filename,
    container: deps.config.sharedLoraContainer,
    blob_name: sharedLoraBlobName(target.filename),
    original_name: target.filename,
  };
}

/** 429 with the numbers unless one more LoRA of `declaredBytes` fits the user's quota. */
export async function enforceUserQuota(deps: LoraDeps, tenantId: string, declaredBytes: number): Promise<void> {
  const failure = await checkUserQuota(deps, tenantId, declaredBytes);
  if (failure) throw quotaExceeded(failure.message, failure.details);
}

/**
 * Stores the record. User ids are fresh; a shared filename is taken unless its holder is rejected or an expired upload
 * session, which the new upload replaces. 409 when the filename is in use.
 */
export async function storeUploadRecord(deps: LoraDeps, doc: LoraDoc): Promise<LoraDoc> {
  for (let attempt = 0; attempt < 3; attempt++) {
    const created = await createLora(deps, doc);
    if (created) return created;
    const existing = await readLora(deps, doc.id, doc.owner_id);
    if (!existing) {
      // Expired but not yet removed (retention.ts): the emulator never removes it, Cosmos may not have yet.
      const { resource: stale } = await deps.loras.item(doc.id, doc.owner_id).read<LoraDoc>().catch(() => ({ resource: undefined }));
      if (stale) await deleteLora(deps, stale, true);
      continue;
    }
    const dead = existing.status === 'rejected' || (existing.status === 'uploading' && !holdsQuota(existing, deps.now()));
    if (!dead) {
      throw conflict(`shared LoRA ${doc.key} already exists (status ${existing.status}); delete it first to replace it`, {
        filename: doc.key,
        status: existing.status,
      });
    }
    await deleteLora(deps, existing, true);
  }
  throw conflict(`shared LoRA ${doc.key} is being changed by another request; try again`);
}

async function sasSession(deps: LoraDeps, doc: LoraDoc): Promise<{ doc: LoraDoc; upload_url: string; expires_at: string }> {
  const stored = await storeUploadRecord(deps, doc);
  const expires_at = stored.upload_expires_at!;
  try {
    const upload_url = await deps.blobSas.url(stored.container, stored.blob_name, 'create-write', new Date(expires_at));
    if (stored.kind === 'shared') {
      // A leftover blob from a replaced session must not be mistaken for this upload.
      await deleteBlobIfExists(deps.blobService.getContainerClient(stored.container).getBlockBlobClient(stored.blob_name));
    }
    return { doc: stored, upload_url, expires_at };
  } catch (err) {
    await deleteLora(deps, stored, true).catch(() => undefined);
    throw err;
  }
}

export async function createUserUploadSession(deps: LoraDeps, tenantId: string, req: CreateUploadRequest): Promise<CreateUploadResponse> {
  await enforceUserQuota(deps, tenantId, req.size_bytes);
  const doc = newUploadRecord(deps, { kind: 'user', tenantId }, { originalName: req.original_name, declaredBytes: req.size_bytes, flow: 'sas' });
  const s = await sasSession(deps, doc);
  return { flat_file_id: s.doc.id, upload_url: s.upload_url, expires_at: s.expires_at, status: 'uploading' };
}

export async function createSharedUploadSession(deps: LoraDeps, req: CreateSharedUploadRequest): Promise<CreateSharedUploadResponse> {
  const doc = newUploadRecord(deps, { kind: 'shared', filename: req.filename }, { originalName: req.filename, declaredBytes: req.size_bytes, flow: 'sas' });
  const s = await sasSession(deps, doc);
  return { filename: s.doc.key, upload_url: s.upload_url, expires_at: s.expires_at, status: 'uploading' };
}

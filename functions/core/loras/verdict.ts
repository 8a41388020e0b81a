// Judging an uploaded blob and recording the verdict. Both upload flows end here: the multipart request (which already
// streamed the sha256) and the BlobCreated trigger (which streams it now). The verdict is written with a CAS on the
// record's ETag, so duplicate or concurrent judges settle on one state.
import type { BlockBlobClient } from '@azure/storage-blob';
import { MAX_LORA_BYTES } from '../../../contract/loras.js';
import { formatBytes } from '../../../contract/bytes.js';
import { validateSafetensors } from '../safetensors/validate.js';
import { BlobChangedError, blobRangeSource, blobState, deleteBlobIfExists, hashBlob, normalizeEtag, VALIDATION_MAX_HEADER_BYTES, type BlobState } from './blob-io.js';
import type { LoraDeps } from './deps.js';
import { checkUserQuota } from './quota.js';
import type { LoraDoc } from './records.js';
import { casLora, readLora } from './store.js';

export type Verdict =
  | { ok: true; sha256: string; size: number; etag: string }
  | {
      ok: false;
      /** reject_code on the record: a validation code, 'too_large' or 'quota_exceeded'. */
      code: string;
      /** The API error the multipart flow answers with. */
      error: 'invalid_lora' | 'quota_exceeded';
      reason: string;
      size: number;
      details?: unknown;
    };

/**
 * Everything that needs only the blob's size comes first, from its properties, before any byte is read: the per-file
 * limit, the owner's byte quota at the real size (an upload SAS cannot bound what is written), the declared size
 * (large-file flow). Then the safetensors structure (ranged reads of the header only), then sha256 (given when the
 * caller hashed while uploading, else one streaming GET). Throws BlobChangedError when the blob is replaced or
 * deleted under it, and storage errors as they are (never reported to the user as a bad file).
 */
export async function judgeBlob(
  deps: LoraDeps,
  doc: LoraDoc,
  blob: BlockBlobClient,
  state: BlobState,
  streamed?: { sha256: string; bytes: number },
): Promise<Verdict> {
  const size = state.size;
  if (size > MAX_LORA_BYTES) {
    return {
      ok: false,
      code: 'too_large',
      error: 'invalid_lora',
      size,
      reason: `the file is ${formatBytes(size)}, above the ${formatBytes(MAX_LORA_BYTES)} limit for one LoRA`,
    };
  }
  if (doc.kind === 'user') {
    const quota = await checkUserQuota(deps, doc.owner_id, size, doc.id);
    if (quota) return { ok: false, code: 'quota_exceeded', error: 'quota_exceeded', size, reason: quota.message, details: quota.details };
  }
  if (doc.upload_flow === 'sas' && doc.status !== 'ready' && doc.size_bytes !== size) {
    // The large-file flow declares the size up front (quota is held on it): a different size means a broken upload.
    return {
      ok: false,
      code: 'size_mismatch',
      error: 'invalid_lora',
      size,
      reason: `size mismatch: the upload was started for ${doc.size_bytes} bytes but the stored file has ${size} bytes; upload it again with the right size_bytes`,
    };
  }
  const result = await validateSafetensors(blobRangeSource(blob, state), { maxHeaderBytes: VALIDATION_MAX_HEADER_BYTES });
  if (!result.ok) return { ok: false, code: result.code, error: 'invalid_lora', size, reason: result.reason };
  const hashed = streamed ?? (await hashBlob(blob, state));
  if (hashed.bytes !== size) throw new BlobChangedError(blob.name);
  return { ok: true, sha256: hashed.sha256, size, etag: state.etag };
}

export function applyVerdict(doc: LoraDoc, verdict: Verdict, nowMs: number): LoraDoc {
  const updated_at = new Date(nowMs).toISOString();
  if (verdict.ok) {
    return {
      ...doc,
      status: 'ready',
      sha256: verdict.sha256,
      size_bytes: verdict.size,
      reject_reason: null,
      reject_code: null,
      upload_expires_at: null,
      validated_blob_etag: normalizeEtag(verdict.etag),
      updated_at,
    };
  }
  return {
    ...doc,
    status: 'rejected',
    sha256: null,
    size_bytes: verdict.size,
    reject_reason: verdict.reason,
    reject_code: verdict.code,
    upload_expires_at: null,
    updated_at,
  };
}

export type SettleResult =
  /** Our verdict is stored. */
  | { kind: 'settled'; doc: LoraDoc }
  /** Someone else already settled it (duplicate delivery): their state stands. */
  | { kind: 'already'; doc: LoraDoc }
  /** The record was deleted meanwhile; the blob has been removed too. */
  | { kind: 'gone' };

/**
 * Stores the verdict with a CAS from the state we judged. A rejected LoRA keeps no blob. On a lost CAS: a record
 * already ready/rejected wins; a deleted record means the blob is an orphan and goes; otherwise (e.g. our own
 * uploading→validating raced a duplicate) retry while the blob is still the version we judged.
 */
export async function settleVerdict(deps: LoraDeps, doc: LoraDoc, blob: BlockBlobClient, verdict: Verdict): Promise<SettleResult> {
  let current = doc;
  for (let attempt = 0; attempt < 5; attempt++) {
    const stored = await casLora(deps, current, applyVerdict(current, verdict, deps.now()));
    if (stored) {
      if (!verdict.ok) await deleteBlobIfExists(blob);
      return { kind: 'settled', doc: stored };
    }
    const fresh = await readLora(deps, current.id, current.owner_id);
    if (!fresh) {
      await deleteBlobIfExists(blob);
      return { kind: 'gone' };
    }
    if (fresh.status === 'ready' || fresh.status === 'rejected') return { kind: 'already', doc: fresh };
    if (verdict.ok) {
      const now = await blobState(blob);
      if (!now || normalizeEtag(now.etag) !== normalizeEtag(verdict.etag)) throw new BlobChangedError(blob.name);
    }
    current = fresh;
  }
  throw new Error(`could not record the verdict for ${doc.id}: the record keeps changing`);
}

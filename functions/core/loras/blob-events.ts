// The BlobCreated trigger's logic: find the record a new blob belongs to and bring the two into agreement.
// Every outcome is decided from the stored state, never from the event alone, so a duplicate, late or out-of-order
// delivery is a harmless no-op:
//   no record            → the blob is an orphan (its session was deleted or swept): delete it
//   rejected             → a rejected LoRA keeps no blob: make sure it is gone
//   ready, same ETag     → redelivery: nothing to do
//   ready, other ETag    → the blob was rewritten after validation (the upload SAS was still valid): identical bytes
//                          just refresh the ETag; different bytes reject the LoRA and delete the blob (ready is immutable)
//   uploading (direct)   → the multipart request that is writing it validates it: leave it alone
//   uploading/validating → validate now: uploading→validating (CAS), judge, ready|rejected (CAS)
import type { BlockBlobClient } from '@azure/storage-blob';
import { BlobChangedError, blobState, deleteBlobIfExists, hashBlob, normalizeEtag } from './blob-io.js';
import type { LoraDeps } from './deps.js';
import { locateRecord, type RecordLocation } from './naming.js';
import type { LoraDoc } from './records.js';
import { casLora, readLora } from './store.js';
import { judgeBlob, settleVerdict } from './verdict.js';

export type BlobEventOutcome =
  /** Not a BlobCreated event for a blob name we generate, or a multipart upload still owned by its request. */
  | 'ignored'
  /** Redelivery or stale event: the stored state already accounts for this blob. */
  | 'no_op'
  | 'ready'
  | 'rejected'
  /** A blob with our naming but no record: deleted. */
  | 'orphan_deleted'
  /** The blob changed while it was being validated; the newer version's own event settles it. */
  | 'superseded';

export interface BlobEventResult {
  outcome: BlobEventOutcome;
  id?: string;
  detail?: string;
  /** The record as settled (outcome 'ready'): the trigger hints it to a machine (PREWARM_HINTS). */
  doc?: LoraDoc;
}

export interface BlobRef {
  container: string;
  blobName: string;
  etag?: string;
}

/** Container and blob name from a Microsoft.Storage.BlobCreated event (Event Grid schema), or null for anything else. */
export function parseBlobCreatedEvent(event: unknown): BlobRef | null {
  if (typeof event !== 'object' || event === null) return null;
  const e = event as { eventType?: unknown; subject?: unknown; data?: { eTag?: unknown; url?: unknown } };
  if (e.eventType !== undefined && e.eventType !== 'Microsoft.Storage.BlobCreated') return null;
  const etag = typeof e.data?.eTag === 'string' ? e.data.eTag : undefined;
  if (typeof e.subject === 'string') {
    const m = /^\/blobServices\/default\/containers\/([^/]+)\/blobs\/(.+)$/.exec(e.subject);
    if (m) return { container: m[1]!, blobName: m[2]!, etag };
  }
  if (typeof e.data?.url === 'string') {
    try {
      const parts = new URL(e.data.url).pathname.split('/').filter(Boolean).map(decodeURIComponent);
      // Azure: /<container>/<blob...>; Azurite (path-style): /<account>/<container>/<blob...>
      const i = parts.length >= 3 && /^devstoreaccount/.test(parts[0]!) ? 1 : 0;
      if (parts.length >= i + 2) return { container: parts[i]!, blobName: parts.slice(i + 1).join('/'), etag };
    } catch {
      return null;
    }
  }
  return null;
}

export async function handleBlobCreated(deps: LoraDeps, event: unknown): Promise<BlobEventResult> {
  const ref = parseBlobCreatedEvent(event);
  if (!ref) return { outcome: 'ignored', detail: 'not a BlobCreated event' };
  const loc = locateRecord(deps.config, ref.container, ref.blobName);
  if (!loc) return { outcome: 'ignored', detail: `blob ${ref.container}/${ref.blobName} is not a LoRA upload name` };
  const blob = deps.blobService.getContainerClient(ref.container).getBlockBlobClient(ref.blobName);
  return reconcile(deps, loc, blob, false);
}

/** Re-runs the trigger's logic for a record (the sweeper uses it for validations that never finished). */
export async function reconcileRecord(deps: LoraDeps, doc: LoraDoc): Promise<BlobEventResult> {
  const blob = deps.blobService.getContainerClient(doc.container).getBlockBlobClient(doc.blob_name);
  return reconcile(deps, { kind: doc.kind, id: doc.id, owner: doc.owner_id }, blob, true);
}

async function reconcile(deps: LoraDeps, loc: RecordLocation, blob: BlockBlobClient, fromSweeper: boolean): Promise<BlobEventResult> {
  const log = deps.log.child({ lora: loc.id, owner: loc.owner, blob: blob.name });
  for (let attempt = 0; attempt < 5; attempt++) {
    let doc = await readLora(deps, loc.id, loc.owner);
    if (!doc) {
      const deleted = await deleteBlobIfExists(blob);
      if (deleted) log.info('deleted an orphan blob (no record: its upload was deleted or expired)');
      return { outcome: deleted ? 'orphan_deleted' : 'no_op', id: loc.id };
    }
    if (doc.blob_name !== blob.name || doc.container !== blob.containerName) {
      log.warn({ recordBlob: `${doc.container}/${doc.blob_name}` }, 'record points at another blob; ignoring the event');
      return { outcome: 'ignored', id: doc.id };
    }
    switch (doc.status) {
      case 'rejected': {
        if (await deleteBlobIfExists(blob)) log.info('deleted a blob written for a rejected LoRA');
        return { outcome: 'no_op', id: doc.id };
      }
      case 'ready':
        return checkReady(deps, doc, blob);
      case 'uploading':
      case 'validating': {
        if (doc.status === 'uploading' && doc.upload_flow === 'direct' && !fromSweeper) {
          return { outcome: 'ignored', id: doc.id, detail: 'multipart upload in progress; its request validates it' };
        }
        const state = await blobState(blob);
        if (!state) {
          if (fromSweeper && doc.status === 'validating') {
            const gone = await casLora(deps, doc, {
              ...doc,
              status: 'rejected',
              reject_code: 'upload_lost',
              reject_reason: 'the uploaded file disappeared before validation finished; upload it again',
              upload_expires_at: null,
              updated_at: new Date(deps.now()).toISOString(),
            });
            if (!gone) continue;
            return { outcome: 'rejected', id: doc.id, detail: 'blob vanished' };
          }
          return { outcome: 'no_op', id: doc.id, detail: 'blob not there (yet or any more)' };
        }
        if (doc.status === 'uploading') {
          const claimed = await casLora(deps, doc, { ...doc, status: 'validating', updated_at: new Date(deps.now()).toISOString() });
          if (!claimed) continue; // a duplicate delivery moved it first: decide again from the new state
          doc = claimed;
        }
        try {
          const verdict = await judgeBlob(deps, doc, blob, state);
          const settled = await settleVerdict(deps, doc, blob, verdict);
          if (settled.kind === 'gone') return { outcome: 'orphan_deleted', id: loc.id, detail: 'record deleted during validation' };
          if (settled.kind === 'already') return { outcome: 'no_op', id: doc.id, detail: `already ${settled.doc.status}` };
          log.info({ status: settled.doc.status, reason: settled.doc.reject_reason, size: settled.doc.size_bytes }, 'LoRA validated');
          return settled.doc.status === 'ready'
            ? { outcome: 'ready', id: doc.id, doc: settled.doc }
            : { outcome: 'rejected', id: doc.id, detail: settled.doc.reject_reason ?? undefined };
        } catch (err) {
          if (err instanceof BlobChangedError) return { outcome: 'superseded', id: doc.id };
          throw err;
        }
      }
    }
  }
  throw new Error(`LoRA ${loc.id}: the record kept changing while the blob event was handled; retry`);
}

async function checkReady(deps: LoraDeps, doc: LoraDoc, blob: BlockBlobClient): Promise<BlobEventResult> {
  const state = await blobState(blob);
  if (!state || normalizeEtag(state.etag) === normalizeEtag(doc.validated_blob_etag)) return { outcome: 'no_op', id: doc.id };
  let hashed: { sha256: string; bytes: number };
  try {
    hashed = await hashBlob(blob, state);
  } catch (err) {
    if (err instanceof BlobChangedError) return { outcome: 'superseded', id: doc.id };
    throw err;
  }
  const now = new Date(deps.now()).toISOString();
  if (hashed.sha256 === doc.sha256 && hashed.bytes === doc.size_bytes) {
    // Same bytes, new ETag (rewritten with identical content): remember the new version.
    await casLora(deps, doc, { ...doc, validated_blob_etag: normalizeEtag(state.etag), updated_at: now });
    return { outcome: 'no_op', id: doc.id, detail: 'same content rewritten' };
  }
  const rejected = await casLora(deps, doc, {
    ...doc,
    status: 'rejected',
    sha256: null,
    reject_code: 'replaced',
    reject_reason:
      'the file was overwritten after it had been validated; a ready LoRA cannot change, so it was removed. Upload the new file as a new LoRA',
    updated_at: now,
  });
  if (!rejected) throw new Error(`LoRA ${doc.id} changed while its overwritten blob was handled; retry`);
  await deleteBlobIfExists(blob);
  deps.log.warn({ lora: doc.id, owner: doc.owner_id }, 'ready LoRA overwritten through its upload SAS: rejected and deleted');
  return { outcome: 'rejected', id: doc.id, detail: 'replaced after validation' };
}

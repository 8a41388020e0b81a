// Reading and deleting LoRAs through the API. Every lookup is scoped to the caller's partition, so another tenant's
// LoRA (or a made-up id) is the same 404; shared LoRAs live in their own partition and are keyed by filename.
import { loraIdSchema, sharedFilenameSchema } from '../../../contract/ids.js';
import { loraContinuationSchema, USER_LORA_PAGE_DEFAULT, USER_LORA_PAGE_MAX, type SharedLora, type UserLora, type UserLoraList } from '../../../contract/loras.js';
import { badRequest, notFound } from '../errors.js';
import { intQuery } from '../http.js';
import { deleteBlobIfExists } from './blob-io.js';
import type { LoraDeps } from './deps.js';
import { SHARED_OWNER, sharedLoraDocId, type LoraDoc } from './records.js';
import { deleteLora, listLoras, listLorasPage, readLora } from './store.js';

/** What user and shared LoRA views share (the contract's record shape); only the naming differs. */
const recordView = (doc: LoraDoc) => ({
  size_bytes: doc.size_bytes,
  sha256: doc.sha256,
  status: doc.status,
  reject_reason: doc.reject_reason,
  created_at: doc.created_at,
  updated_at: doc.updated_at,
});

export function toUserLoraView(doc: LoraDoc): UserLora {
  return { id: doc.id, flat_file_id: doc.id, original_name: doc.original_name, ...recordView(doc) };
}

export function toSharedLoraView(doc: LoraDoc): SharedLora {
  return { filename: doc.key, ...recordView(doc) };
}

/** The caller's own LoRA, or 404 (also for a malformed id and for another tenant's id). */
export async function getUserLora(deps: LoraDeps, tenantId: string, id: string | undefined): Promise<LoraDoc> {
  const parsed = loraIdSchema.safeParse(id);
  if (!parsed.success) throw notFound(`LoRA ${id ?? ''}`.trim());
  const doc = await readLora(deps, parsed.data, tenantId);
  if (!doc || doc.kind !== 'user') throw notFound(`LoRA ${parsed.data}`);
  return doc;
}

export async function getSharedLora(deps: LoraDeps, filename: string | undefined): Promise<LoraDoc> {
  const parsed = sharedFilenameSchema.safeParse(filename);
  if (!parsed.success) throw notFound(`shared LoRA ${filename ?? ''}`.trim());
  const doc = await readLora(deps, sharedLoraDocId(parsed.data), SHARED_OWNER);
  if (!doc || doc.kind !== 'shared') throw notFound(`shared LoRA ${parsed.data}`);
  return doc;
}


const badContinuation = () => badRequest('continuation must be the `continuation` value of a previous page of GET /api/user-loras, unchanged');

/** Our continuation wraps the Cosmos token (opaque JSON) in base64url so it is URL-safe and its shape can be checked. */
const encodeContinuation = (cosmosToken: string): string => Buffer.from(JSON.stringify({ v: 1, c: cosmosToken })).toString('base64url');

function decodeContinuation(raw: string): string {
  if (!loraContinuationSchema.safeParse(raw).success) throw badContinuation();
  try {
    const parsed = JSON.parse(Buffer.from(raw, 'base64url').toString('utf8')) as { v?: unknown; c?: unknown };
    if (parsed.v === 1 && typeof parsed.c === 'string' && parsed.c.length > 0) return parsed.c;
  } catch {
    // falls through to the 400
  }
  throw badContinuation();
}

/** GET /api/user-loras?limit=&continuation=: one page of the caller's LoRAs, newest first; 400 for bad paging values. */
export async function listUserLorasPage(deps: LoraDeps, tenantId: string, query: URLSearchParams): Promise<UserLoraList> {
  const limit = intQuery(query, 'limit', USER_LORA_PAGE_DEFAULT, 1, USER_LORA_PAGE_MAX);
  const raw = query.get('continuation');
  const continuation = raw === null ? undefined : decodeContinuation(raw);
  let page;
  try {
    page = await listLorasPage(deps, tenantId, 'user', { limit, continuation });
  } catch (err) {
    // Cosmos refuses a token it did not issue (or one for another query) with 400.
    if (continuation !== undefined && (err as { code?: unknown }).code === 400) throw badContinuation();
    throw err;
  }
  return { loras: page.docs.map(toUserLoraView), continuation: page.continuation ? encodeContinuation(page.continuation) : null };
}
export const listSharedLoras = (deps: LoraDeps): Promise<LoraDoc[]> => listLoras(deps, SHARED_OWNER, 'shared');

/**
 * Removes the blob, then the record. In this order a retry after a crash in between still finds the record and
 * finishes the job; a blob written later through a still-valid upload SAS finds no record and is deleted by the
 * BlobCreated trigger.
 */
export async function removeLora(deps: LoraDeps, doc: LoraDoc): Promise<void> {
  await deleteBlobIfExists(deps.blobService.getContainerClient(doc.container).getBlockBlobClient(doc.blob_name));
  await deleteLora(deps, doc);
  deps.log.info({ lora: doc.id, owner: doc.owner_id, status: doc.status }, 'LoRA deleted');
}

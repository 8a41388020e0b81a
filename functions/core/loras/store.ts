// Reads and compare-and-swap writes of LoRA records. Every read is scoped to the owner partition and re-checks the
// owner (cosmosdb-server ignores some partition options), so another tenant's record is indistinguishable from none.
import type { LoraDeps } from './deps.js';
import { isNotFound, isPreconditionFailed } from '../sdk-errors.js';
import type { LoraDoc } from './records.js';
import { isExpired, withRetention } from './retention.js';
import { readItem } from '../point-read.js';

/** Cosmos system properties we never write back. */
function stripSystem(doc: LoraDoc): LoraDoc {
  const { _etag: _e, ...rest } = doc as LoraDoc & Record<string, unknown>;
  for (const k of ['_rid', '_self', '_ts', '_attachments']) delete (rest as Record<string, unknown>)[k];
  return rest as LoraDoc;
}

export async function readLora(deps: LoraDeps, id: string, owner: string): Promise<LoraDoc | null> {
  const resource = await readItem<LoraDoc>(deps.loras, id, owner);
  return resource && resource.owner_id === owner && !isExpired(resource, deps.now()) ? resource : null;
}

/** Creates a record; returns null when one with this id already exists in the partition. */
export async function createLora(deps: LoraDeps, doc: LoraDoc): Promise<LoraDoc | null> {
  try {
    const { resource } = await deps.loras.items.create<LoraDoc>(stripSystem(withRetention(doc, deps.config, deps.now())));
    return resource as LoraDoc;
  } catch (err) {
    if ((err as { code?: unknown }).code === 409) return null;
    throw err;
  }
}

/**
 * Replaces `current` with `next` only if the record still has current's ETag. Returns the stored record, or null when
 * the CAS lost (the record changed or is gone): the caller re-reads and decides again.
 */
export async function casLora(deps: LoraDeps, current: LoraDoc, next: LoraDoc): Promise<LoraDoc | null> {
  if (!current._etag) throw new Error(`record ${current.id} has no _etag; read it from Cosmos before a CAS`);
  try {
    const { resource } = await deps.loras
      .item(current.id, current.owner_id)
      .replace<LoraDoc>(stripSystem(withRetention(next, deps.config, deps.now())), { accessCondition: { type: 'IfMatch', condition: current._etag } });
    return resource ?? null;
  } catch (err) {
    if (isPreconditionFailed(err) || isNotFound(err)) return null;
    throw err;
  }
}

/** Deletes the record; with `ifMatch`, only that version of it. Returns false when nothing (or another version) was there. */
export async function deleteLora(deps: LoraDeps, doc: Pick<LoraDoc, 'id' | 'owner_id' | '_etag'>, ifMatch = false): Promise<boolean> {
  try {
    await deps.loras
      .item(doc.id, doc.owner_id)
      .delete(ifMatch && doc._etag ? { accessCondition: { type: 'IfMatch', condition: doc._etag } } : undefined);
    return true;
  } catch (err) {
    if (isNotFound(err) || isPreconditionFailed(err)) return false;
    throw err;
  }
}

/** Records still within their retention: the same condition as isExpired, for queries. */
const NOT_EXPIRED = '(NOT IS_DEFINED(c.retain_until) OR IS_NULL(c.retain_until) OR c.retain_until > @now)';

export interface LoraPage {
  docs: LoraDoc[];
  /** The Cosmos continuation token for the next page; undefined on the last. */
  continuation?: string;
}

/**
 * One page of an owner's records of one kind, newest first, leaving out expired ones. The owner filter is in WHERE
 * (the emulator ignores partitionKey). A page may hold fewer than `limit` records even when more follow.
 */
export async function listLorasPage(
  deps: LoraDeps,
  owner: string,
  kind: LoraDoc['kind'],
  page: { limit: number; continuation?: string },
): Promise<LoraPage> {
  const res = await deps.loras.items
    .query<LoraDoc>(
      {
        query: `SELECT * FROM c WHERE c.owner_id = @owner AND c.kind = @kind AND ${NOT_EXPIRED} ORDER BY c.created_at DESC`,
        parameters: [
          { name: '@owner', value: owner },
          { name: '@kind', value: kind },
          { name: '@now', value: new Date(deps.now()).toISOString() },
        ],
      },
      { partitionKey: owner, maxItemCount: page.limit, continuationToken: page.continuation },
    )
    .fetchNext();
  const docs = res.resources.filter((d) => d.owner_id === owner && !isExpired(d, deps.now()));
  return { docs, continuation: res.hasMoreResults && res.continuationToken ? res.continuationToken : undefined };
}

/** All records of one owner and kind, newest first (every page). */
export async function listLoras(deps: LoraDeps, owner: string, kind: LoraDoc['kind']): Promise<LoraDoc[]> {
  const out: LoraDoc[] = [];
  let continuation: string | undefined;
  do {
    const page = await listLorasPage(deps, owner, kind, { limit: 1000, continuation });
    out.push(...page.docs);
    continuation = page.continuation;
  } while (continuation);
  return out;
}

// From a blob back to the record that owns it: the inverse of userLoraBlobName / sharedLoraBlobName in records.ts.
import { loraIdSchema, sharedFilenameSchema, tenantIdSchema } from '../../../contract/ids.js';
import type { Config } from '../config.js';
import { SHARED_OWNER, sharedLoraDocId } from './records.js';

export interface RecordLocation {
  kind: 'user' | 'shared';
  /** Cosmos id and partition key of the record. */
  id: string;
  owner: string;
}

/** The record a blob belongs to, or null for a name our code never generates (such blobs are left alone). */
export function locateRecord(config: Pick<Config, 'userLoraContainer' | 'sharedLoraContainer'>, container: string, blobName: string): RecordLocation | null {
  if (container === config.userLoraContainer) {
    const m = /^users\/([^/]+)\/([^/]+)\.safetensors$/.exec(blobName);
    if (!m || !tenantIdSchema.safeParse(m[1]).success || !loraIdSchema.safeParse(m[2]).success) return null;
    return { kind: 'user', id: m[2]!, owner: m[1]! };
  }
  if (container === config.sharedLoraContainer) {
    const m = /^shared\/([^/]+)$/.exec(blobName);
    if (!m || !sharedFilenameSchema.safeParse(m[1]).success) return null;
    return { kind: 'shared', id: sharedLoraDocId(m[1]!), owner: SHARED_OWNER };
  }
  return null;
}

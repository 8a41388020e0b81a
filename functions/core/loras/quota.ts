// Per-user LoRA quotas (USER_MAX_LORAS, USER_MAX_LORA_BYTES). Checked twice: when an upload starts (declared size)
// and when the blob is validated (real size). In-flight uploads hold their declared size, so two sessions cannot both
// squeeze into the last free slot; rejected records and expired upload sessions hold nothing.
import { formatBytes } from '../../../contract/bytes.js';
import type { LoraDeps } from './deps.js';
import type { LoraDoc } from './records.js';

export interface Usage {
  count: number;
  bytes: number;
}

export interface QuotaFailure {
  message: string;
  details: { max_loras: number; used_loras: number; max_bytes: number; used_bytes: number; needed_bytes: number };
}

/** Records that hold quota: ready ones, validating ones, and upload sessions that have not expired. */
export function holdsQuota(doc: Pick<LoraDoc, 'status' | 'upload_expires_at'>, nowMs: number): boolean {
  if (doc.status === 'ready' || doc.status === 'validating') return true;
  if (doc.status === 'uploading') return !doc.upload_expires_at || Date.parse(doc.upload_expires_at) > nowMs;
  return false;
}

/** What a user's library holds now, leaving out `excludeId` (the upload being judged). */
export async function userUsage(deps: LoraDeps, owner: string, excludeId?: string): Promise<Usage> {
  const { resources } = await deps.loras.items
    .query<Pick<LoraDoc, 'id' | 'owner_id' | 'status' | 'size_bytes' | 'upload_expires_at'>>(
      {
        query:
          'SELECT c.id, c.owner_id, c.status, c.size_bytes, c.upload_expires_at FROM c ' +
          'WHERE c.owner_id = @owner AND c.kind = "user" AND c.status IN ("uploading", "validating", "ready")',
        parameters: [{ name: '@owner', value: owner }],
      },
      { partitionKey: owner },
    )
    .fetchAll();
  const now = deps.now();
  const usage: Usage = { count: 0, bytes: 0 };
  for (const d of resources) {
    if (d.owner_id !== owner || d.id === excludeId || !holdsQuota(d, now)) continue;
    usage.count += 1;
    usage.bytes += d.size_bytes;
  }
  return usage;
}

/** null when one more LoRA of `neededBytes` fits next to `usage`; else a message with the numbers. */
export function checkQuota(limits: { maxLoras: number; maxBytes: number }, usage: Usage, neededBytes: number): QuotaFailure | null {
  const details = {
    max_loras: limits.maxLoras,
    used_loras: usage.count,
    max_bytes: limits.maxBytes,
    used_bytes: usage.bytes,
    needed_bytes: neededBytes,
  };
  if (usage.count + 1 > limits.maxLoras) {
    return {
      message: `LoRA limit reached: ${usage.count} of ${limits.maxLoras} LoRAs used (uploads in progress count too); delete one first`,
      details,
    };
  }
  if (usage.bytes + neededBytes > limits.maxBytes) {
    return {
      message:
        `storage quota exceeded: ${formatBytes(usage.bytes)} of ${formatBytes(limits.maxBytes)} used, ` +
        `this file needs ${formatBytes(neededBytes)}; delete LoRAs to make room`,
      details,
    };
  }
  return null;
}

export async function checkUserQuota(deps: LoraDeps, owner: string, neededBytes: number, excludeId?: string): Promise<QuotaFailure | null> {
  const usage = await userUsage(deps, owner, excludeId);
  return checkQuota({ maxLoras: deps.config.userMaxLoras, maxBytes: deps.config.userMaxLoraBytes }, usage, neededBytes);
}

// The upload sweeper (timer): upload sessions that never completed stop holding quota when their SAS expires (see
// quota.ts) and are removed here, with any blob they left; validations that were interrupted (the trigger crashed
// between its two CAS steps) are run again; rejected records past their retention are removed. Every step is a CAS or idempotent delete, so overlapping runs and a
// BlobCreated event arriving at the same time settle on one outcome.
import { reconcileRecord } from './blob-events.js';
import { blobState, deleteBlobIfExists } from './blob-io.js';
import type { LoraDeps } from './deps.js';
import type { LoraDoc } from './records.js';
import { deleteLora } from './store.js';

/**
 * Rejected records past their retention (retention.ts): Cosmos deletes them by ttl, the local emulator does not, and
 * records written before ttl existed have none. Deleted here with any blob, so both places end up the same.
 */
async function retireRejected(deps: LoraDeps, report: SweepReport): Promise<void> {
  const now = deps.now();
  const { resources } = await deps.loras.items
    .query<LoraDoc>({
      query:
        'SELECT * FROM c WHERE c.status = "rejected" AND ((IS_DEFINED(c.retain_until) AND c.retain_until <= @now) ' +
        'OR (NOT IS_DEFINED(c.retain_until) AND c.updated_at <= @cutoff))',
      parameters: [
        { name: '@now', value: new Date(now).toISOString() },
        { name: '@cutoff', value: new Date(now - deps.config.rejectedLoraRetentionHours * 3_600_000).toISOString() },
      ],
    })
    .fetchAll();
  for (const doc of resources) {
    try {
      await deleteBlobIfExists(deps.blobService.getContainerClient(doc.container).getBlockBlobClient(doc.blob_name));
      if (await deleteLora(deps, doc, true)) report.retired += 1;
    } catch (err) {
      report.errors += 1;
      deps.log.error({ err, lora: doc.id, owner: doc.owner_id }, 'retiring a rejected LoRA failed; the next run retries');
    }
  }
}

/** A `validating` record untouched for this long lost its validator (a validation takes seconds to a few minutes). */
export const STALE_VALIDATION_MS = 15 * 60_000;

export interface SweepReport {
  /** Expired upload sessions removed (record and any blob). */
  expired: number;
  /** Expired sessions whose blob had arrived: validated now instead of dropped. */
  validated: number;
  /** Stuck validations re-run. */
  revalidated: number;
  /** Rejected records past their retention removed (with any blob). */
  retired: number;
  errors: number;
}

export async function sweepUploads(deps: LoraDeps, opts: { limit?: number } = {}): Promise<SweepReport> {
  const now = deps.now();
  const { resources } = await deps.loras.items
    .query<LoraDoc>({
      query: 'SELECT * FROM c WHERE c.status = "uploading" OR c.status = "validating"',
    })
    .fetchAll();
  const report: SweepReport = { expired: 0, validated: 0, revalidated: 0, retired: 0, errors: 0 };
  let handled = 0;
  for (const doc of resources) {
    if (opts.limit !== undefined && handled >= opts.limit) break;
    const log = deps.log.child({ lora: doc.id, owner: doc.owner_id });
    try {
      if (doc.status === 'uploading') {
        if (!doc.upload_expires_at || Date.parse(doc.upload_expires_at) > now) continue;
        handled += 1;
        const blob = deps.blobService.getContainerClient(doc.container).getBlockBlobClient(doc.blob_name);
        if (doc.upload_flow !== 'direct' && (await blobState(blob))) {
          // The client finished before the SAS expired but the BlobCreated event never came (or is still queued).
          const r = await reconcileRecord(deps, doc);
          if (r.outcome === 'ready' || r.outcome === 'rejected') report.validated += 1;
          log.info({ outcome: r.outcome }, 'expired upload session had its blob: validated');
          continue;
        }
        // Record first (with its ETag: an event that just claimed it wins), then the blob.
        if (!(await deleteLora(deps, doc, true))) continue;
        await deleteBlobIfExists(blob);
        report.expired += 1;
        log.info({ flow: doc.upload_flow ?? 'sas', expired_at: doc.upload_expires_at }, 'expired upload session removed');
      } else if (now - Date.parse(doc.updated_at) > STALE_VALIDATION_MS) {
        handled += 1;
        const r = await reconcileRecord(deps, doc);
        report.revalidated += 1;
        log.warn({ outcome: r.outcome }, 'stuck validation re-run');
      }
    } catch (err) {
      report.errors += 1;
      log.error({ err }, 'sweeping an upload failed; the next run retries');
    }
  }
  await retireRejected(deps, report);
  return report;
}

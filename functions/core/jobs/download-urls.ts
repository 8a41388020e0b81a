// Read URLs for the LoRAs of a claimed job. A SAS cannot be revoked one by one, so what bounds a URL's use after the
// job is cancelled or re-assigned is its lifetime: a few minutes (DOWNLOAD_SAS_MIN_MINUTES) plus the file's size at a
// minimum rate (DOWNLOAD_SAS_MIN_MIBPS), capped (DOWNLOAD_SAS_MINUTES). A download slower than that asks for a fresh
// URL, which is given only to the machine that holds the job at its current epoch, while it runs.
import type { DownloadUrlRequest, DownloadUrlResponse } from '../../../contract/jobs.js';
import type { Principal } from '../auth.js';
import type { Config } from '../config.js';
import type { CoreDeps } from '../deps.js';
import { conflict, notFound } from '../errors.js';
import { SHARED_OWNER, sharedLoraDocId, type LoraDoc } from '../loras/records.js';
import { authorizeMachine } from '../machines/store.js';
import type { JobDoc } from './model.js';
import { findJobById } from './store.js';
import { readItem } from '../point-read.js';

type DownloadSasConfig = Pick<Config, 'downloadSasMinutes' | 'downloadSasMinMinutes' | 'downloadSasMinMiBps'>;

/** How long a read URL for a file of this size lives. */
export function downloadUrlLifetimeMs(config: DownloadSasConfig, sizeBytes: number): number {
  const transferMs = Math.ceil((Math.max(0, sizeBytes) / (config.downloadSasMinMiBps * 1024 * 1024)) * 1000);
  return Math.min(config.downloadSasMinutes * 60_000, config.downloadSasMinMinutes * 60_000 + transferMs);
}

/** A read URL for one stored LoRA and when it expires. */
export async function issueDownloadUrl(deps: CoreDeps, doc: LoraDoc): Promise<{ url: string; expiresAt: Date }> {
  const expiresAt = new Date(deps.now() + downloadUrlLifetimeMs(deps.config, doc.size_bytes));
  return { url: await deps.blobSas.url(doc.container, doc.blob_name, 'read', expiresAt), expiresAt };
}

/** The job's LoRA record if it is still ready, else null. */
export async function readReadyLora(deps: CoreDeps, job: JobDoc, l: JobDoc['loras'][number]): Promise<LoraDoc | null> {
  const [id, owner] = l.kind === 'user' ? [l.key, job.tenant_id] : [sharedLoraDocId(l.key), SHARED_OWNER];
  const resource = await readItem<LoraDoc>(deps.loras, id, owner);
  return resource && resource.owner_id === owner && resource.status === 'ready' ? resource : null;
}

/**
 * POST /jobs/{id}/download-url. 404: no such job, or the key is not one of its LoRAs (or that LoRA is gone).
 * 409: the job is not running on this machine at this epoch (cancelled, finished, re-assigned, not claimed yet).
 */
export async function refreshDownloadUrl(deps: CoreDeps, principal: Principal, jobId: string, req: DownloadUrlRequest): Promise<DownloadUrlResponse> {
  await authorizeMachine(deps, principal, req.machine_id);
  const job = await findJobById(deps.jobs, jobId);
  if (!job) throw notFound(`job ${jobId}`);
  if (job.epoch !== req.epoch || job.machine_id !== req.machine_id || job.status !== 'running') {
    throw conflict(
      `no fresh download URL: job ${job.id} is ${job.status} at epoch ${job.epoch}${job.machine_id ? ` on ${job.machine_id}` : ''}, ` +
        `not running at epoch ${req.epoch} on ${req.machine_id}; stop this attempt`,
      { status: job.status, epoch: job.epoch },
    );
  }
  const wanted = job.loras.find((l) => l.key === req.key);
  if (!wanted) throw notFound(`LoRA ${req.key} in job ${job.id}`);
  const doc = await readReadyLora(deps, job, wanted);
  if (!doc) throw notFound(`LoRA ${req.key} (it was deleted or replaced)`);
  const { url, expiresAt } = await issueDownloadUrl(deps, doc);
  return { key: wanted.key, download_url: url, download_url_expires_at: expiresAt.toISOString() };
}

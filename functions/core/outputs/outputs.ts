// Job outputs on the control plane: write-only upload URLs for one running attempt, the check of what the agent reports
// with `succeeded` (recorded on the job in the same compare-and-swap as the outcome, so a job never shows half its
// outputs), and short-lived read URLs for the job's owner.
//
// Blob names are chosen here, never by the machine: outputs/<tenant>/<job>/e<epoch>/<name> in OUTPUT_CONTAINER. The
// epoch in the name and the fencing on every call keep two attempts apart: a machine whose attempt was taken away
// gets 409 for upload URLs, and the job only ever lists the outputs of the attempt that succeeded.
import { RestError } from '@azure/storage-blob';
import type { JobOutput, JobOutputList, OutputUploadRequest, OutputUploadResponse } from '../../../contract/outputs.js';
import type { Principal } from '../auth.js';
import { ApiError, badRequest, conflict, notFound } from '../errors.js';
import type { CoreDeps } from '../deps.js';
import { outputsLive, type JobDoc } from '../jobs/model.js';
import { findJobById, readOwnJob } from '../jobs/store.js';
import { authorizeMachine } from '../machines/store.js';

export const outputBlobPrefix = (tenantId: string, jobId: string, epoch: number): string => `outputs/${tenantId}/${jobId}/e${epoch}/`;
export const outputBlobName = (tenantId: string, jobId: string, epoch: number, name: string): string =>
  `${outputBlobPrefix(tenantId, jobId, epoch)}${name}`;

const tooLarge = (message: string, details?: unknown) => new ApiError('too_large', message, details);

/** 409 unless `job` is running at `epoch` on `machineId`: uploads belong to the attempt that holds the job. */
function fenceRunning(job: JobDoc, epoch: number, machineId: string, what: string): void {
  if (job.epoch !== epoch || job.machine_id !== machineId || job.status !== 'running') {
    throw conflict(
      `stale ${what}: job ${job.id} is ${job.status} at epoch ${job.epoch}${job.machine_id ? ` on ${job.machine_id}` : ''}; epoch ${epoch} on ${machineId} may not deliver outputs`,
      { status: job.status, epoch: job.epoch },
    );
  }
}

/** The limits, on declared (request) or reported (outcome) files. Throws 413 naming the limit. */
export function checkOutputLimits(deps: Pick<CoreDeps, 'config'>, files: readonly { name: string; size_bytes: number }[]): void {
  const { outputMaxFiles, outputMaxBytes } = deps.config;
  const names = new Set<string>();
  for (const f of files) {
    if (names.has(f.name)) throw badRequest(`output name ${f.name} appears twice; names must be unique within a job`);
    names.add(f.name);
  }
  if (files.length > outputMaxFiles) {
    throw tooLarge(`the job produced ${files.length} output files; at most ${outputMaxFiles} are accepted per job (OUTPUT_MAX_FILES)`, {
      files: files.length,
      max_files: outputMaxFiles,
    });
  }
  const total = files.reduce((n, f) => n + f.size_bytes, 0);
  if (total > outputMaxBytes) {
    throw tooLarge(`the job produced ${total} bytes of outputs; at most ${outputMaxBytes} are accepted per job (OUTPUT_MAX_BYTES)`, {
      bytes: total,
      max_bytes: outputMaxBytes,
    });
  }
}

/** Machine: write-only SAS per declared file, for the attempt it holds. */
export async function requestOutputUploads(deps: CoreDeps, principal: Principal, jobId: string, req: OutputUploadRequest): Promise<OutputUploadResponse> {
  const machineId = principal.subject;
  await authorizeMachine(deps, principal, machineId);
  const job = await findJobById(deps.jobs, jobId);
  if (!job) throw notFound(`job ${jobId}`);
  fenceRunning(job, req.epoch, machineId, 'output upload');
  checkOutputLimits(deps, req.files);
  const expires = new Date(deps.now() + deps.config.outputUploadSasMinutes * 60_000);
  const uploads = await Promise.all(
    req.files.map(async (f) => {
      const blob_name = outputBlobName(job.tenant_id, job.id, req.epoch, f.name);
      return { name: f.name, blob_name, upload_url: await deps.blobSas.url(deps.config.outputContainer, blob_name, 'create-write', expires) };
    }),
  );
  return { uploads, expires_at: expires.toISOString() };
}

/**
 * What the agent reports with `succeeded`: within the limits, and each file is really there under this epoch's name
 * with the reported size and content type. Read before the outcome's compare-and-swap; the blobs of an epoch are
 * written only by the machine that holds it, so nothing changes them in between.
 */
export async function verifyReportedOutputs(deps: CoreDeps, job: JobDoc, epoch: number, outputs: readonly JobOutput[]): Promise<JobOutput[]> {
  if (outputs.length === 0) return [];
  try {
    checkOutputLimits(deps, outputs);
  } catch (err) {
    // The outcome event is refused as a whole (nothing recorded); the agent reports the failure instead.
    if (err instanceof ApiError) throw badRequest(err.message, err.details);
    throw err;
  }
  const container = deps.blobService.getContainerClient(deps.config.outputContainer);
  await Promise.all(
    outputs.map(async (o) => {
      const name = outputBlobName(job.tenant_id, job.id, epoch, o.name);
      let props;
      try {
        props = await container.getBlobClient(name).getProperties();
      } catch (err) {
        if (err instanceof RestError && err.statusCode === 404) throw badRequest(`output ${o.name} was not uploaded (no blob ${name})`);
        throw err;
      }
      if (props.contentLength !== o.size_bytes) {
        throw badRequest(`output ${o.name} is ${props.contentLength} bytes in storage, not the ${o.size_bytes} reported`);
      }
    }),
  );
  return outputs.map((o) => ({ ...o }));
}

/** When outputs recorded now expire (the record's TTL; the Bicep lifecycle rule deletes the blobs after as many days). */
export const outputsExpireAt = (deps: Pick<CoreDeps, 'config' | 'now'>): string =>
  new Date(deps.now() + deps.config.outputRetentionDays * 86_400_000).toISOString();

/** The outputs a job view shows: none once they have expired. */
export const liveOutputs = (doc: Pick<JobDoc, 'outputs' | 'outputs_expire_at'>, nowMs: number): JobOutput[] =>
  outputsLive(doc, nowMs) ? (doc.outputs ?? []) : [];

/** Owner: each output of the job with a short-lived read URL. Another tenant's job is a 404, and so are expired outputs. */
export async function listOutputsForOwner(deps: CoreDeps, tenantId: string, jobId: string): Promise<JobOutputList> {
  const job = await readOwnJob(deps.jobs, tenantId, jobId);
  if (job.outputs?.length && liveOutputs(job, deps.now()).length === 0) {
    throw new ApiError('not_found', `the outputs of job ${jobId} expired at ${job.outputs_expire_at} (OUTPUT_RETENTION_DAYS)`);
  }
  const expires = new Date(deps.now() + deps.config.outputReadSasMinutes * 60_000);
  const epoch = job.outputs_epoch ?? job.epoch;
  const outputs = await Promise.all(
    liveOutputs(job, deps.now()).map(async (o) => ({
      ...o,
      url: await deps.blobSas.url(deps.config.outputContainer, outputBlobName(job.tenant_id, job.id, epoch, o.name), 'read', expires),
    })),
  );
  return { job_id: job.id, epoch, outputs, urls_expire_at: expires.toISOString(), outputs_expire_at: job.outputs_expire_at ?? null };
}

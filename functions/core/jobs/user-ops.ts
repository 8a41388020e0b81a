// What users do with their jobs after intake: read, list, cancel, retry. Always inside the caller's partition, so
// another tenant's job is a 404 like a job that does not exist.
import type { JobStatus } from '../../../contract/jobs.js';
import { conflict } from '../errors.js';
import type { CoreDeps } from '../deps.js';
import { enforceQuota, resolveLoras } from './intake.js';
import { isTerminal, unplaced, type JobDoc } from './model.js';
import { readOwnJob, updateJob } from './store.js';

export const MAX_LIST = 500;

export async function listJobs(deps: CoreDeps, tenantId: string, status: JobStatus | null, limit = 100): Promise<JobDoc[]> {
  const top = Math.min(Math.max(1, Math.trunc(limit)), MAX_LIST);
  const parameters: { name: string; value: string }[] = [{ name: '@t', value: tenantId }];
  let where = 'c.tenant_id = @t AND c.doc_type = "job"';
  if (status) {
    where += ' AND c.status = @s';
    parameters.push({ name: '@s', value: status });
  }
  const { resources } = await deps.jobs.items
    .query<JobDoc>({ query: `SELECT TOP ${top} * FROM c WHERE ${where} ORDER BY c.created_at DESC`, parameters })
    .fetchAll();
  return resources;
}

/**
 * pending/assigned → cancelled at once (a later claim of the assigned epoch gets 409). running → cancelled too; the
 * machine learns it from its next heartbeat (`stop_jobs`) or its next event post (`cancel_requested`). Cancelling a
 * cancelled job is a no-op; a succeeded or failed job cannot be cancelled (409).
 */
export async function cancelJob(deps: CoreDeps, tenantId: string, jobId: string): Promise<JobDoc> {
  const current = await readOwnJob(deps.jobs, tenantId, jobId);
  const { doc } = await updateJob(deps.jobs, current, (d) => {
    if (d.status === 'cancelled') return null;
    if (isTerminal(d.status)) throw conflict(`job ${jobId} already ${d.status}; there is nothing to cancel`);
    const at = new Date(deps.now()).toISOString();
    return {
      ...d,
      status: 'cancelled',
      error: d.status === 'running' ? `cancelled by the user while running on ${d.machine_id}` : 'cancelled by the user',
      finished_at: at,
      updated_at: at,
      not_before: null,
    };
  });
  return doc;
}

/**
 * failed/cancelled → pending with a fresh attempt budget (JOB_MAX_ATTEMPTS more attempts). The epoch moves on, so a
 * machine still finishing the old attempt can no longer report for it. The LoRAs are validated again and the quota
 * applies as for a new job.
 */
export async function retryJob(deps: CoreDeps, tenantId: string, jobId: string): Promise<JobDoc> {
  const current = await readOwnJob(deps.jobs, tenantId, jobId);
  const refuse = (d: JobDoc) => {
    if (d.status !== 'failed' && d.status !== 'cancelled') {
      throw conflict(`job ${jobId} is ${d.status}; only failed or cancelled jobs can be retried`);
    }
  };
  refuse(current);
  const loras = await resolveLoras(deps, tenantId, current.requirements.loras);
  await enforceQuota(deps, tenantId);
  const { doc } = await updateJob(deps.jobs, current, (d) => {
    refuse(d);
    const at = new Date(deps.now()).toISOString();
    const attempt = d.attempt + 1;
    return {
      ...d,
      status: 'pending',
      loras,
      epoch: d.epoch + 1,
      attempt,
      attempt_limit: attempt + deps.config.maxAttempts - 1,
      ...unplaced(),
      updated_at: at,
    };
  });
  return doc;
}

// What machines do with the jobs dispatched to them: claim (fenced by the epoch) and report events.
//
// Fencing: a machine may claim a job only while it is `assigned` to that machine at that epoch, and only once — a
// redelivered dispatch message for an epoch that is already running gets 409, so it can never start a second run.
// Every event carries the epoch; an event for an epoch that is no longer the job's current one gets 409.
import type { ClaimRequest, ClaimResponse, JobEventInput, JobEventResponse } from '../../../contract/jobs.js';
import type { Principal } from '../auth.js';
import { conflict, notFound } from '../errors.js';
import { authorizeMachine } from '../machines/store.js';
import type { CoreDeps } from '../deps.js';
import { issueDownloadUrl, readReadyLora } from './download-urls.js';
import { appendEvent } from './events.js';
import { afterHandBack, afterLostAttempt, startedTimes, type JobDoc } from './model.js';
import { findJobById, updateJob } from './store.js';
import { outputsExpireAt, verifyReportedOutputs } from '../outputs/outputs.js';
import { observeOutcome, observeStarted } from './observe.js';
import { inSpan, SpanKind } from '../telemetry.js';

function describeHolder(job: JobDoc): string {
  return `job ${job.id} is ${job.status} at epoch ${job.epoch}${job.machine_id ? ` on ${job.machine_id}` : ''}`;
}

/** Throws 409 unless `job` may be claimed by this machine at this epoch now. */
export function fenceClaim(job: JobDoc, req: ClaimRequest): void {
  if (job.epoch !== req.epoch || job.machine_id !== req.machine_id) {
    throw conflict(`stale claim: ${describeHolder(job)}; epoch ${req.epoch} for ${req.machine_id} is no longer valid`, {
      status: job.status,
      epoch: job.epoch,
    });
  }
  if (job.status === 'running') {
    throw conflict(`job ${job.id} epoch ${job.epoch} was already claimed; a redelivered dispatch must not start a second run`, {
      status: job.status,
      epoch: job.epoch,
    });
  }
  if (job.status !== 'assigned') throw conflict(`cannot claim: ${describeHolder(job)}`, { status: job.status, epoch: job.epoch });
}

export async function claimJob(deps: CoreDeps, principal: Principal, jobId: string, req: ClaimRequest): Promise<ClaimResponse> {
  await authorizeMachine(deps, principal, req.machine_id);
  const job = await findJobById(deps.jobs, jobId);
  if (!job) throw notFound(`job ${jobId}`);
  // The agent's claim span is the parent when it sent one; else the job's own trace.
  return inSpan(
    'job.claim.accept',
    {
      parent: req.traceparent ?? job.trace_parent ?? null,
      kind: SpanKind.SERVER,
      attributes: { 'lora_router.job.id': job.id, 'lora_router.job.epoch': req.epoch, 'lora_router.machine.id': req.machine_id },
    },
    () => acceptClaim(deps, job, req),
  );
}

async function acceptClaim(deps: CoreDeps, job: JobDoc, req: ClaimRequest): Promise<ClaimResponse> {
  const jobId = job.id;
  fenceClaim(job, req);

  // Resolve the files before the transition: a job whose LoRA has gone since intake never becomes running.
  const docs = await Promise.all(job.loras.map((l) => readReadyLora(deps, job, l)));
  const gone = job.loras.filter((_, i) => !docs[i]).map((l) => l.key);
  if (gone.length > 0) {
    const reason = `required LoRA(s) no longer available: ${gone.join(', ')}`;
    await updateJob(deps.jobs, job, (d) => {
      if (d.epoch !== req.epoch || d.status !== 'assigned') return null;
      return afterLostAttempt(d, 'agent_failure', reason, deps.now(), deps.config.retryBaseSeconds, false);
    });
    throw conflict(`cannot run job ${jobId}: ${reason}; the job has failed`);
  }
  const urls = await Promise.all(docs.map((d) => issueDownloadUrl(deps, d!)));
  // The first URL to expire (without LoRAs there is none; the floor is what one would have had).
  const expires = urls.length ? Math.min(...urls.map((u) => u.expiresAt.getTime())) : deps.now() + deps.config.downloadSasMinMinutes * 60_000;

  const { doc } = await updateJob(deps.jobs, job, (d) => {
    fenceClaim(d, req);
    const at = new Date(deps.now()).toISOString();
    // The slot is held from here; the run starts when the agent reports `started` (its LoRAs ready).
    return { ...d, status: 'running', claimed_at: at, started_at: null, updated_at: at };
  });
  return {
    job_id: doc.id,
    epoch: doc.epoch,
    attempt: doc.attempt,
    service_required: doc.service_required,
    payload: doc.payload,
    loras: doc.loras.map((l, i) => ({
      kind: l.kind,
      key: l.key,
      size_bytes: docs[i]!.size_bytes,
      sha256: docs[i]!.sha256 ?? '',
      download_url: urls[i]!.url,
    })),
    download_url_expires_at: new Date(expires).toISOString(),
  };
}

function eventData(ev: JobEventInput): Record<string, unknown> {
  const { type: _t, epoch: _e, ...data } = ev;
  return data;
}

/**
 * An agent's report about the attempt it claimed. started/progress/log are appended to the job's event log;
 * succeeded/failed are terminal transitions (CAS) and are logged too. Duplicates of a terminal report for the same
 * epoch are no-ops (200), so an agent may resend until it gets an answer.
 */
export async function postJobEvent(
  deps: CoreDeps,
  principal: Principal,
  jobId: string,
  ev: JobEventInput,
  /** Called (and awaited) when this report ended the machine's run with success (placement on events). */
  onRunEnded?: (machineId: string, stored: JobDoc, epoch: number) => Promise<unknown>,
): Promise<JobEventResponse> {
  const machineId = principal.subject;
  await authorizeMachine(deps, principal, machineId);
  const job = await findJobById(deps.jobs, jobId);
  if (!job) throw notFound(`job ${jobId}`);

  const lf = job.last_failure;
  if (
    ev.type === 'failed' &&
    lf &&
    lf.epoch === ev.epoch &&
    (lf.kind === 'agent_failure' || lf.kind === 'handed_back') &&
    (job.status === 'pending' || job.epoch !== ev.epoch)
  ) {
    return { accepted: true, cancel_requested: false }; // this failure was already recorded and retried
  }
  if (job.epoch !== ev.epoch || job.machine_id !== machineId) {
    throw conflict(`stale event: ${describeHolder(job)}; epoch ${ev.epoch} on ${machineId} is no longer valid — stop this run`, {
      status: job.status,
      epoch: job.epoch,
    });
  }

  switch (job.status) {
    case 'assigned':
      throw conflict(`job ${jobId} epoch ${ev.epoch} is not claimed yet; claim it before reporting`);
    case 'pending':
      throw conflict(`stale event: ${describeHolder(job)}`);
    case 'cancelled':
      if (ev.type === 'log' || ev.type === 'progress' || ev.type === 'started') {
        await appendEvent(deps, job, ev.type, eventData(ev));
        return { accepted: true, cancel_requested: true };
      }
      return { accepted: false, cancel_requested: true };
    case 'succeeded':
    case 'failed':
      if (ev.type === job.status) return { accepted: true, cancel_requested: false }; // duplicate terminal report
      if (ev.type === 'log' || ev.type === 'progress') {
        await appendEvent(deps, job, ev.type, eventData(ev));
        return { accepted: true, cancel_requested: false };
      }
      throw conflict(`job ${jobId} already ${job.status} at epoch ${job.epoch}`);
    case 'running':
      break;
  }

  if (ev.type === 'log' || ev.type === 'progress') {
    await appendEvent(deps, job, ev.type, eventData(ev));
    return { accepted: true, cancel_requested: false };
  }

  // Outputs are checked before the transition and recorded in the same CAS as the outcome: all of them or none.
  const outputs = ev.type === 'succeeded' && ev.outputs?.length ? await verifyReportedOutputs(deps, job, ev.epoch, ev.outputs) : [];

  // started, succeeded, failed: a transition of the job document, fenced again on the fresh state.
  let cancelled = false;
  const { doc, changed } = await updateJob(deps.jobs, job, (d) => {
    if (d.epoch !== ev.epoch || d.machine_id !== machineId) throw conflict(`stale event: ${describeHolder(d)}`);
    if (d.status === 'cancelled') {
      cancelled = true;
      return null;
    }
    if (d.status !== 'running') {
      if (d.status === ev.type) return null; // raced with our own duplicate
      throw conflict(`cannot report ${ev.type}: ${describeHolder(d)}`);
    }
    const at = new Date(deps.now()).toISOString();
    switch (ev.type) {
      case 'started':
        return { ...d, cache_outcome: ev.cache, ...startedTimes(d, at), updated_at: at };
      case 'succeeded':
        return {
          ...d,
          status: 'succeeded',
          result: ev.result ?? null,
          outputs,
          outputs_epoch: outputs.length ? ev.epoch : null,
          outputs_expire_at: outputs.length ? outputsExpireAt(deps) : null,
          error: null,
          finished_at: at,
          updated_at: at,
        };
      case 'failed':
        if (ev.handback) return afterHandBack(d, ev.reason, deps.now());
        return afterLostAttempt(d, 'agent_failure', ev.reason, deps.now(), deps.config.retryBaseSeconds, ev.retryable);
    }
  });
  if (cancelled) {
    if (ev.type === 'started') await appendEvent(deps, job, ev.type, eventData(ev));
    return { accepted: ev.type === 'started', cancel_requested: true };
  }
  if (changed) {
    // Attributed to the attempt that reported it (the document may already be at the next epoch).
    const outcome = ev.type === 'failed' && ev.handback ? 'handed_back' : doc.status === 'pending' ? 'retrying' : 'failed';
    const data = ev.type === 'failed' ? { ...eventData(ev), outcome, not_before: doc.not_before } : eventData(ev);
    const record = async () => {
      await appendEvent(deps, job, ev.type, data);
      if (ev.type === 'started') await observeStarted(deps, job, ev.cache, machineId);
      else if (ev.type === 'succeeded') await observeOutcome(deps, job, 'succeeded');
      else await observeOutcome(deps, job, doc.status === 'pending' ? 'retried' : 'failed', ev.reason);
    };
    // The run succeeded: the next job for this slot is placed alongside the bookkeeping, before the agent hears back.
    // Not after a failure: it may say the machine is in trouble (ComfyUI gone, disk full, shutting down), which the
    // heartbeat the agent sends after it reports; placing before that beat sent retries straight back to a machine
    // that could not run them. The heartbeat's own freed-slot pass places then.
    await Promise.all([record(), ev.type === 'succeeded' ? onRunEnded?.(machineId, doc, ev.epoch) : undefined]);
  }
  return { accepted: true, cancel_requested: doc.status === 'cancelled' };
}

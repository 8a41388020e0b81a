// What a job's transitions add to telemetry: a server span in the job's trace, the OTel metrics, and the rollup
// buckets behind GET /api/metrics (metrics/rollups.ts). Called after the transition's CAS succeeded, so once each.
// Telemetry never fails the request: a rollup write that fails is logged and dropped.
import type { CoreDeps } from '../deps.js';
import { addFinished, addStart, addToRollups, FLEET_SCOPE, tenantScope, type StartSample } from '../metrics/rollups.js';
import { appMetrics, cacheStateOf, inSpan, SpanKind } from '../telemetry.js';
import type { CacheOutcome, JobDoc } from './model.js';

export function startSample(job: JobDoc, cache: CacheOutcome, atMs: number): StartSample {
  const missing = new Set(cache.missing_loras);
  return {
    cacheState: cacheStateOf(cache.hit_loras.length, cache.missing_loras.length),
    latencySeconds: Math.max(0, (atMs - Date.parse(job.created_at)) / 1000),
    score: job.affinity_score,
    hits: cache.hit_loras.length,
    misses: cache.missing_loras.length,
    bytesDownloaded: cache.bytes_downloaded,
    downloadMs: cache.download_ms,
    loras: job.loras.map((l) => ({ key: l.key, bytes: missing.has(l.key) ? l.size_bytes : 0 })),
  };
}

async function rollup(deps: CoreDeps, job: JobDoc, atMs: number, change: Parameters<typeof addToRollups>[3]): Promise<void> {
  try {
    await addToRollups(deps.events, [FLEET_SCOPE, tenantScope(job.tenant_id)], atMs, change);
  } catch (err) {
    deps.log.warn({ err: (err as Error).message, job_id: job.id }, 'metrics rollup not written');
  }
}

/** The agent reported `started` with its cache outcome. */
export async function observeStarted(deps: CoreDeps, job: JobDoc, cache: CacheOutcome, machineId: string): Promise<void> {
  const atMs = deps.now();
  const sample = startSample(job, cache, atMs);
  appMetrics().startLatency.record(sample.latencySeconds, { 'lora_router.cache.state': sample.cacheState, 'lora_router.job.pool': job.pool });
  await inSpan(
    'job.started',
    {
      parent: job.trace_parent ?? null,
      kind: SpanKind.SERVER,
      attributes: {
        'lora_router.job.id': job.id,
        'lora_router.job.epoch': job.epoch,
        'lora_router.machine.id': machineId,
        'lora_router.cache.state': sample.cacheState,
        'lora_router.cache.hits': sample.hits,
        'lora_router.cache.misses': sample.misses,
        'lora_router.cache.bytes_downloaded': sample.bytesDownloaded,
        'lora_router.cache.download_ms': sample.downloadMs,
        'lora_router.job.start_latency_s': sample.latencySeconds,
      },
    },
    () => rollup(deps, job, atMs, (d) => addStart(d, sample)),
  );
}

/** The attempt ended: `succeeded`, `failed` (final) or `retried` (a retryable failure sent it back to pending). */
export async function observeOutcome(deps: CoreDeps, job: JobDoc, outcome: 'succeeded' | 'failed' | 'retried', reason?: string): Promise<void> {
  const atMs = deps.now();
  appMetrics().jobsFinished.add(1, { 'lora_router.job.outcome': outcome, 'lora_router.job.pool': job.pool });
  if (outcome === 'failed') appMetrics().dispatchDeadLetters.add(1, { 'lora_router.job.pool': job.pool, 'lora_router.dead_letter.reason': 'attempts_exhausted_or_final' });
  await inSpan(
    'job.outcome',
    {
      parent: job.trace_parent ?? null,
      kind: SpanKind.SERVER,
      attributes: {
        'lora_router.job.id': job.id,
        'lora_router.job.epoch': job.epoch,
        'lora_router.job.attempt': job.attempt,
        'lora_router.job.outcome': outcome,
        ...(reason ? { 'lora_router.job.error': reason.slice(0, 500) } : {}),
      },
    },
    () => rollup(deps, job, atMs, (d) => addFinished(d, outcome)),
  );
}

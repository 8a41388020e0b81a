// The scheduler pass's telemetry: a `job.place` span per assignment (policy, score and its breakdown, how long the job
// waited) with a `job.dispatch` child whose context travels in the dispatch message; placement metrics; backlog gauge.
import type { Assignment } from '../scheduler/index.js';
import type { JobDoc } from '../jobs/model.js';
import { appMetrics, breakdownAttributes, inSpan, SpanKind, traceparentOf } from '../telemetry.js';

/** `send` gets the dispatch span's traceparent and says whether the message went out. */
export async function tracePlacement(before: JobDoc, stored: JobDoc, a: Assignment, send: (traceparent: string | undefined) => Promise<boolean>): Promise<void> {
  const waitedFrom = Date.parse(before.not_before ?? before.created_at);
  const delaySeconds = Math.max(0, (Date.parse(stored.assigned_at ?? '') - waitedFrom) / 1000);
  const m = appMetrics();
  m.placementScore.record(a.score, { 'lora_router.placement.policy': a.policy });
  if (Number.isFinite(delaySeconds)) m.placementDelay.record(delaySeconds, { 'lora_router.job.pool': stored.pool });
  await inSpan(
    'job.place',
    {
      parent: stored.trace_parent ?? null,
      attributes: {
        'lora_router.job.id': stored.id,
        'lora_router.job.epoch': stored.epoch,
        'lora_router.job.attempt': stored.attempt,
        'lora_router.machine.id': a.machineId,
        'lora_router.placement.policy': a.policy,
        'lora_router.placement.score': a.score,
        'lora_router.placement.delay_s': Number.isFinite(delaySeconds) ? delaySeconds : 0,
        'lora_router.placement.hit_loras': a.hitLoras.length,
        'lora_router.placement.missing_loras': a.missingLoras.length,
        ...breakdownAttributes(a.breakdown),
      },
    },
    (placeSpan) =>
      inSpan(
        'job.dispatch',
        { parent: traceparentOf(placeSpan) ?? null, kind: SpanKind.PRODUCER, attributes: { 'lora_router.job.id': stored.id, 'lora_router.machine.id': a.machineId, 'lora_router.job.epoch': stored.epoch } },
        async (span) => {
          const ok = await send(traceparentOf(span));
          if (!ok) {
            span.setAttribute('lora_router.dispatch.failed', true);
            appMetrics().dispatchSendFailures.add(1, { 'lora_router.machine.id': a.machineId });
          }
        },
      ),
  );
}

const poolsSeen = new Set<string>();

/** Pending jobs per pool as this pass saw them (0 for a pool seen before and empty now: a gauge keeps its last value). */
export function recordBacklog(pending: readonly JobDoc[]): void {
  const byPool = new Map<string, number>([...poolsSeen].map((p) => [p, 0]));
  for (const p of pending) {
    byPool.set(p.pool, (byPool.get(p.pool) ?? 0) + 1);
    poolsSeen.add(p.pool);
  }
  for (const [pool, n] of byPool) appMetrics().pendingBacklog.record(n, { 'lora_router.job.pool': pool });
}

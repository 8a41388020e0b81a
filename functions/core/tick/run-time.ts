// The typical job run time the scheduler plans with (`SchedulerInput.expectedJobSeconds`: the load scorer, the delay
// rule's and the `start` scorer's slot-wait estimates), learned from the jobs that succeeded in the last hour instead of
// the constant DEFAULT_EXPECTED_JOB_SECONDS. Read at most once a minute per instance (one query), so event passes add
// no Cosmos cost. Fleet-wide, not per service: a per-service estimate needs each busy job's service in the pass input.
import type { CoreDeps } from '../deps.js';
import { DEFAULT_EXPECTED_JOB_SECONDS } from '../scheduler/index.js';

/** How long an instance reuses the learned value. */
export const RUN_TIME_TTL_MS = 60_000;
/** Fewer finished jobs than this in the window: keep the default. */
export const RUN_TIME_MIN_SAMPLES = 5;

const cached = new WeakMap<object, { atMs: number; seconds: number }>();

/** Mean run time (claim → finish) of the last hour's succeeded jobs (up to 1000), else the default. */
export async function learnedJobSeconds(deps: CoreDeps): Promise<number> {
  const now = deps.now();
  const hit = cached.get(deps.jobs);
  if (hit && now - hit.atMs < RUN_TIME_TTL_MS) return hit.seconds;
  let seconds = DEFAULT_EXPECTED_JOB_SECONDS;
  try {
    const since = new Date(now - 3600_000).toISOString();
    const { resources } = await deps.jobs.items
      .query<{ started_at: string | null; finished_at: string | null }>({
        query: 'SELECT TOP 1000 c.started_at, c.finished_at FROM c WHERE c.doc_type = "job" AND c.status = "succeeded" AND c.finished_at >= @since',
        parameters: [{ name: '@since', value: since }],
      })
      .fetchAll();
    let total = 0;
    let n = 0;
    for (const r of resources) {
      if (!r.started_at || !r.finished_at) continue;
      const s = (Date.parse(r.finished_at) - Date.parse(r.started_at)) / 1000;
      if (!(s >= 0)) continue;
      total += s;
      n++;
    }
    if (n >= RUN_TIME_MIN_SAMPLES) seconds = total / n;
  } catch (err) {
    deps.log.warn({ err: (err as Error).message }, 'could not learn the job run time; planning with the default');
  }
  cached.set(deps.jobs, { atMs: now, seconds });
  return seconds;
}

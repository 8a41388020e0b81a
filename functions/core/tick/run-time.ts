// The typical job run time the scheduler plans with, learned from the jobs that succeeded in the last hour instead of
// the constant DEFAULT_EXPECTED_JOB_SECONDS: fleet-wide (`SchedulerInput.expectedJobSeconds`: the load scorer, jobs
// without a service estimate) and per `service_required` (`MachineState.busyRunSeconds`: each busy job's expected run
// time, from which slot-wait.ts estimates when its slot frees for the delay rule and the `start` scorer). A service
// with fewer than RUN_TIME_MIN_SAMPLES finished jobs in the window falls back to the fleet-wide mean, and that to the
// constant. Read at most once a minute per instance (one query), so event passes add no Cosmos cost.
import type { CoreDeps } from '../deps.js';
import { DEFAULT_EXPECTED_JOB_SECONDS } from '../scheduler/index.js';
import { slotSeconds, type FinishedRow } from '../jobs/model.js';

/** How long an instance reuses the learned values. */
export const RUN_TIME_TTL_MS = 60_000;
/** Fewer finished jobs than this in the window (fleet-wide, or of one service): keep the fallback. */
export const RUN_TIME_MIN_SAMPLES = 5;

export interface RunTimes {
  /** Mean over every service (the default constant with too few samples). */
  fleetSeconds: number;
  /** Mean per service_required, for services with enough samples. */
  byService: ReadonlyMap<string, number>;
}

const cached = new WeakMap<object, { atMs: number; times: RunTimes }>();

/** The expected run time of a job of `service`: its own mean, else the fleet's. */
export function expectedRunSeconds(times: RunTimes, service: string | undefined): number {
  return (service !== undefined ? times.byService.get(service) : undefined) ?? times.fleetSeconds;
}

/** Means of the run times (claim → finish) of the last hour's succeeded jobs (up to 1000), overall and per service. */
export function meanRunTimes(rows: readonly FinishedRow[]): RunTimes {
  let total = 0;
  let n = 0;
  const per = new Map<string, { total: number; n: number }>();
  for (const r of rows) {
    const s = slotSeconds(r);
    if (s === null) continue;
    total += s;
    n++;
    if (r.service_required) {
      const p = per.get(r.service_required) ?? { total: 0, n: 0 };
      p.total += s;
      p.n++;
      per.set(r.service_required, p);
    }
  }
  const byService = new Map<string, number>();
  for (const [service, p] of per) if (p.n >= RUN_TIME_MIN_SAMPLES) byService.set(service, p.total / p.n);
  return { fleetSeconds: n >= RUN_TIME_MIN_SAMPLES ? total / n : DEFAULT_EXPECTED_JOB_SECONDS, byService };
}

export async function learnedRunTimes(deps: CoreDeps): Promise<RunTimes> {
  const now = deps.now();
  const hit = cached.get(deps.jobs);
  if (hit && now - hit.atMs < RUN_TIME_TTL_MS) return hit.times;
  let times: RunTimes = { fleetSeconds: DEFAULT_EXPECTED_JOB_SECONDS, byService: new Map() };
  try {
    const since = new Date(now - 3600_000).toISOString();
    const { resources } = await deps.jobs.items
      .query<FinishedRow>({
        query:
          'SELECT TOP 1000 c.service_required, c.claimed_at, c.started_at, c.finished_at FROM c WHERE c.doc_type = "job" AND c.status = "succeeded" AND c.finished_at >= @since',
        parameters: [{ name: '@since', value: since }],
      })
      .fetchAll();
    times = meanRunTimes(resources);
  } catch (err) {
    deps.log.warn({ err: (err as Error).message }, 'could not learn the job run times; planning with the default');
  }
  cached.set(deps.jobs, { atMs: now, times });
  return times;
}

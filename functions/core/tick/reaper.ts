// The reaper: takes jobs back from machines that can no longer run them.
//  - machine lost: a job assigned/running on a machine silent for more than MACHINE_LIVENESS_SECONDS (or no longer
//    registered) → the attempt is lost: pending again (epoch+1, attempt+1, that machine avoided; re-routed at once the
//    first time, then with exponential backoff, see lostMachineDelaySeconds) or failed once JOB_MAX_ATTEMPTS are spent;
//  - orphaned: a running job its (live) machine stopped listing in its heartbeats, CLAIM_TIMEOUT_SECONDS after the
//    claim (the agent restarted and forgot it) → the attempt is lost, as above;
//  - claim timeout: a job assigned but not claimed within CLAIM_TIMEOUT_SECONDS (dispatch lost, agent busy or
//    stuck) → re-routed with the same attempt (epoch+1).
// Decisions are made on a snapshot and applied with a CAS on the freshly read job, re-checked first, so a job that
// moved on meanwhile (claimed, finished, cancelled) is left alone.
import { mapLimit } from '../map-limit.js';
import type { CoreDeps } from '../deps.js';
import { afterClaimTimeout, afterLostAttempt, BUSY_STATUSES, claimedAt, type JobDoc } from '../jobs/model.js';
import { readJob, updateJob } from '../jobs/store.js';
import { heartbeatMs, isLive, type MachineDoc } from '../machines/model.js';
import { listMachineDocs } from '../machines/store.js';

export type ReapAction = 'machine_lost' | 'orphaned' | 'claim_timeout';

export interface ReaperResult {
  examined: number;
  requeued: number;
  failed: number;
  rerouted_unclaimed: number;
  skipped: number;
  actions: { job_id: string; action: ReapAction; outcome: 'pending' | 'failed' | 'skipped' }[];
}

interface ActiveRow {
  id: string;
  tenant_id: string;
  status: JobDoc['status'];
  machine_id: string | null;
  epoch: number;
  assigned_at: string | null;
  claimed_at?: string | null;
  started_at: string | null;
}

/** What to do with one assigned/running job, or null to leave it. Pure. */
export function reapDecision(
  job: Pick<JobDoc, 'id' | 'status' | 'machine_id' | 'epoch' | 'assigned_at' | 'claimed_at' | 'started_at'>,
  machine: MachineDoc | undefined,
  nowMs: number,
  livenessSeconds: number,
  claimTimeoutSeconds: number,
): ReapAction | null {
  if (job.status !== 'assigned' && job.status !== 'running') return null;
  if (!machine || !isLive(machine, nowMs, livenessSeconds)) return 'machine_lost';
  const timeoutMs = claimTimeoutSeconds * 1000;
  if (job.status === 'assigned') {
    const at = job.assigned_at ? Date.parse(job.assigned_at) : 0;
    return nowMs - at > timeoutMs ? 'claim_timeout' : null;
  }
  // The agent lists a job from its claim on (its LoRAs are fetched before the run starts): measured from the claim.
  const claimed = claimedAt(job);
  const since = claimed ? Date.parse(claimed) : 0;
  const beat = heartbeatMs(machine) ?? 0;
  const listed = machine.running_jobs.some((r) => r.job_id === job.id && r.epoch === job.epoch);
  return !listed && beat - since > timeoutMs ? 'orphaned' : null;
}

function reasonFor(action: ReapAction, machineId: string | null, livenessSeconds: number): string {
  switch (action) {
    case 'machine_lost':
      return `machine ${machineId} stopped heartbeating (silent for more than ${livenessSeconds} s)`;
    case 'orphaned':
      return `machine ${machineId} no longer reports the job as running`;
    case 'claim_timeout':
      return `machine ${machineId} did not claim the job in time`;
  }
}

export async function runReaper(deps: CoreDeps): Promise<ReaperResult> {
  const nowMs = deps.now();
  const { machineLivenessSeconds: liveness, claimTimeoutSeconds: claimTimeout, retryBaseSeconds } = deps.config;
  const [rows, machines] = await Promise.all([
    deps.jobs.items
      .query<ActiveRow>(
        `SELECT c.id, c.tenant_id, c.status, c.machine_id, c.epoch, c.assigned_at, c.claimed_at, c.started_at FROM c WHERE c.doc_type = "job" AND c.status IN (${BUSY_STATUSES.map((s) => `"${s}"`).join(',')})`,
      )
      .fetchAll()
      .then((r) => r.resources),
    listMachineDocs(deps.machines),
  ]);
  const byId = new Map(machines.map((m) => [m.machine_id, m]));
  const result: ReaperResult = { examined: rows.length, requeued: 0, failed: 0, rerouted_unclaimed: 0, skipped: 0, actions: [] };

  const todo = rows
    .map((row) => ({ row, action: reapDecision(row, row.machine_id ? byId.get(row.machine_id) : undefined, nowMs, liveness, claimTimeout) }))
    .filter((t): t is { row: ActiveRow; action: ReapAction } => t.action !== null);

  await mapLimit(todo, 16, async ({ row, action }) => {
    const fresh = await readJob(deps.jobs, row.tenant_id, row.id);
    let outcome: 'pending' | 'failed' | 'skipped' = 'skipped';
    if (fresh) {
      const { doc, changed } = await updateJob(deps.jobs, fresh, (d) => {
        // Only the attempt we judged: same epoch, same machine, same status.
        if (d.epoch !== row.epoch || d.machine_id !== row.machine_id || d.status !== row.status) return null;
        const reason = reasonFor(action, d.machine_id, liveness);
        return action === 'claim_timeout'
          ? afterClaimTimeout(d, deps.now())
          : afterLostAttempt(d, action, reason, deps.now(), retryBaseSeconds);
      });
      if (changed) outcome = doc.status === 'failed' ? 'failed' : 'pending';
    }
    if (outcome === 'skipped') result.skipped++;
    else if (action === 'claim_timeout') result.rerouted_unclaimed++;
    else if (outcome === 'failed') result.failed++;
    else result.requeued++;
    result.actions.push({ job_id: row.id, action, outcome });
    if (outcome !== 'skipped') deps.log.info({ job_id: row.id, machine_id: row.machine_id, action, outcome }, 'reaper took a job back');
  });
  return result;
}

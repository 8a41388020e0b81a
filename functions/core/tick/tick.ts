// One scheduler pass over Cosmos: read pending jobs, machines and their load; run the pure scheduler; reserve slots
// on the chosen machines; move each job pending → assigned with a compare-and-swap on its ETag; dispatch
// {job_id, epoch} to the machine. Safe to run concurrently with itself (see ledger.ts): a job is assigned at most once
// per epoch (its CAS) and a machine never gets more jobs than slots (its ledger CAS).
import { schedule, type Assignment, type MachineState, type PendingJob } from '../scheduler/index.js';
import { mapLimit } from '../map-limit.js';
import type { CoreDeps } from '../deps.js';
import { BUSY_STATUSES, slotHeldSinceMs, type JobDoc } from '../jobs/model.js';
import { casReplaceJob } from '../jobs/store.js';
import { acceptsWork, isLive, isReceiving, type MachineDoc } from '../machines/model.js';
import { listMachineDocs } from '../machines/store.js';
import { schedulerSettings } from './settings.js';
import { countBusyHolders, readAllLedgers, reserveSlots, RESERVATION_GRACE_MS, type Candidate, type KnownJob, type LedgerDoc } from '../machines/ledger.js';
import { expectedRunSeconds, learnedRunTimes } from './run-time.js';
import { withOverflow } from './overflow.js';
import { recordBacklog, tracePlacement } from './trace.js';
import { recordWaitNotes } from './wait-notes.js';
import { MAX_RUNNERS_UP } from '../../../contract/jobs.js';

/** Oldest pending jobs read per pass; the rest wait for the next pass (a pass every 2 s by default). */
export const MAX_PENDING_PER_TICK = 5_000;

export interface TickResult {
  pending: number;
  machines_live: number;
  planned: number;
  assigned: number;
  /** Planned but the job changed under us (412): cancelled, or assigned by a concurrent pass. */
  lost_races: number;
  /** Planned but the machine had no slot left when the pass tried to reserve it. */
  no_slot: number;
  send_failures: number;
  unassigned: Record<string, number>;
  /** Changed wait reasons written to jobs (wait-notes.ts). */
  wait_notes: number;
  policy: string;
}

export interface BusyRow {
  id: string;
  machine_id: string | null;
  status: JobDoc['status'];
  epoch: number;
  assigned_at: string | null;
  /** Absent on records older than the field (their started_at is the claim time: see claimedAt). */
  claimed_at?: string | null;
  started_at: string | null;
  service_required?: string;
}

export async function readPendingJobs(deps: CoreDeps, nowIso: string, limit = MAX_PENDING_PER_TICK): Promise<JobDoc[]> {
  const { resources } = await deps.jobs.items
    .query<JobDoc>({
      query: `SELECT TOP ${limit} * FROM c WHERE c.doc_type = "job" AND c.status = "pending" AND (IS_NULL(c.not_before) OR c.not_before <= @now) ORDER BY c.created_at ASC`,
      parameters: [{ name: '@now', value: nowIso }],
    })
    .fetchAll();
  return resources;
}

export async function readBusyJobs(deps: CoreDeps): Promise<BusyRow[]> {
  const { resources } = await deps.jobs.items
    .query<BusyRow>(
      `SELECT c.id, c.machine_id, c.status, c.epoch, c.assigned_at, c.claimed_at, c.started_at, c.service_required FROM c WHERE c.doc_type = "job" AND c.status IN (${BUSY_STATUSES.map((s) => `"${s}"`).join(',')})`,
    )
    .fetchAll();
  return resources;
}

export function toPendingJob(doc: JobDoc): PendingJob {
  return {
    id: doc.id,
    tenantId: doc.tenant_id,
    pool: doc.pool,
    priority: doc.priority,
    createdAtMs: Date.parse(doc.created_at),
    notBeforeMs: doc.not_before ? Date.parse(doc.not_before) : undefined,
    attempt: doc.attempt,
    loras: doc.loras.map((l) => ({ kind: l.kind, key: l.key, sizeBytes: l.size_bytes })),
    avoidMachines: doc.avoid_machines,
  };
}

export function toMachineState(
  m: MachineDoc,
  busySlots: number,
  nowMs: number,
  livenessSeconds: number,
  busySinceMs?: readonly number[],
  busyRunSeconds?: readonly number[],
): MachineState {
  return {
    ...(busySinceMs?.length ? { busySinceMs } : {}),
    ...(busySinceMs?.length && busyRunSeconds?.length === busySinceMs.length ? { busyRunSeconds } : {}),
    id: m.machine_id,
    pool: m.pool,
    slots: m.slots,
    ...(m.queue_depth ? { queueDepth: m.queue_depth } : {}),
    busySlots,
    live: isLive(m, nowMs, livenessSeconds),
    draining: m.draining,
    receiving: isReceiving(m),
    // Drained by an admin, or unhealthy by the agent's own report: no new work (scheduler/filters/accepts-work.ts).
    acceptsWork: acceptsWork(m),
    cachedUser: new Set(m.cached_user),
    cachedShared: new Set(m.cached_shared),
    budgetBytes: m.cache?.budget_bytes ?? 0,
    usedBytes: m.cache?.used_bytes ?? 0,
    downloadBytesPerSecond: m.download_bytes_per_second ?? 0,
  };
}

/** The job as assigned: pure, for tests and for the CAS below. */
export function assignedDoc(doc: JobDoc, a: Assignment, nowMs: number): JobDoc {
  const at = new Date(nowMs).toISOString();
  return {
    ...doc,
    status: 'assigned',
    machine_id: a.machineId,
    epoch: doc.epoch + 1,
    affinity_score: a.score,
    score_breakdown: a.breakdown,
    policy: a.policy,
    runners_up: (a.runnersUp ?? []).map((r) => ({ machine_id: r.machineId, score: r.score, score_breakdown: r.breakdown })),
    overflow: a.overflow
      ? { from_pool: a.overflow.fromPool, to_pool: a.overflow.toPool, from_wait_seconds: a.overflow.fromWaitSeconds, to_wait_seconds: a.overflow.toWaitSeconds, threshold_seconds: a.overflow.thresholdSeconds }
      : null,
    cache: { hit_loras: a.hitLoras, missing_loras: a.missingLoras },
    cache_outcome: null,
    assigned_at: at,
    claimed_at: null,
    started_at: null,
    not_before: null,
    assignments: doc.assignments + 1,
    updated_at: at,
  };
}

/** What a pass reads about the fleet besides the pending jobs: busy jobs, machines, slot ledgers. */
export interface FleetSnapshot {
  readAtMs: number;
  busy: BusyRow[];
  machines: MachineDoc[];
  ledgers: Map<string, LedgerDoc>;
}

export async function readFleetSnapshot(deps: CoreDeps): Promise<FleetSnapshot> {
  const readAtMs = deps.now();
  const [busy, machines, ledgers] = await Promise.all([readBusyJobs(deps), listMachineDocs(deps.machines), readAllLedgers(deps.machines)]);
  return { readAtMs, busy, machines, ledgers };
}

export interface PassOptions {
  /** Place only these pending jobs (intake: the job just stored) instead of reading the oldest pending ones. */
  jobs?: JobDoc[];
  /** A recent snapshot to plan from instead of reading one (placement.ts caches one per instance). */
  snapshot?: FleetSnapshot;
  /** Called with the snapshot the pass planned from, after its own assignments were added to it. */
  onSnapshot?: (snapshot: FleetSnapshot) => void;
  /** false: do not write changed wait reasons (intake's first look, which may look again at once). Default true. */
  recordWaits?: boolean;
  /**
   * A run whose outcome its machine has just reported (placement.ts, placeAfterOutcome): it no longer holds a slot,
   * although the machine's last heartbeat still lists it in `running_jobs`.
   */
  finishedRun?: { machineId: string; jobId: string; epoch: number; /** The job as the outcome's CAS stored it. */ stored?: KnownJob };
}

/**
 * One scheduler pass: the timer's (all pending jobs, a fresh snapshot) or an event's (placement.ts). A stale snapshot
 * is safe: the ledger CAS re-reads the machine's holders before a slot is taken, and the job CAS fences the job.
 */
export async function runSchedulerTick(deps: CoreDeps, opts: PassOptions = {}): Promise<TickResult> {
  const nowMs = deps.now();
  const { config } = deps;
  const { policy, weights } = schedulerSettings(config);
  const [pendingDocs, snapshot, runTimes] = await Promise.all([
    opts.jobs ?? readPendingJobs(deps, new Date(nowMs).toISOString()),
    opts.snapshot ?? readFleetSnapshot(deps),
    learnedRunTimes(deps),
  ]);
  const { busy, ledgers } = snapshot;
  const machines = [...snapshot.machines];

  const known = new Map<string, KnownJob>();
  const busyByMachine = new Map<string, number>();
  // Since when each busy slot is held (slotHeldSinceMs: the claim, else the assignment): the affinity delay rule
  // estimates from these when a full machine that caches a job's LoRAs frees a slot.
  const busySince = new Map<string, number[]>();
  // ... and how long each is expected to run, learned per service_required (run-time.ts).
  const busyRun = new Map<string, number[]>();
  for (const b of busy) {
    known.set(b.id, { status: b.status, machine_id: b.machine_id, epoch: b.epoch });
    if (!b.machine_id) continue;
    busyByMachine.set(b.machine_id, (busyByMachine.get(b.machine_id) ?? 0) + 1);
    const since = slotHeldSinceMs(b);
    if (Number.isFinite(since)) {
      busySince.set(b.machine_id, [...(busySince.get(b.machine_id) ?? []), since]);
      busyRun.set(b.machine_id, [...(busyRun.get(b.machine_id) ?? []), expectedRunSeconds(runTimes, b.service_required)]);
    }
  }
  for (const p of pendingDocs) known.set(p.id, { status: p.status, machine_id: p.machine_id, epoch: p.epoch });

  machines.sort((a, b) => (a.machine_id < b.machine_id ? -1 : a.machine_id > b.machine_id ? 1 : 0));
  const states = machines.map((m) => {
    // Busy = the most conservative of: jobs assigned/running here, ledger holders, jobs the agent still runs.
    const fin = opts.finishedRun?.machineId === m.machine_id ? opts.finishedRun : undefined;
    const agentRuns = fin ? m.running_jobs.filter((r) => r.job_id !== fin.jobId || r.epoch !== fin.epoch).length : m.running_jobs.length;
    const n = Math.max(busyByMachine.get(m.machine_id) ?? 0, countBusyHolders(ledgers.get(m.machine_id), m.machine_id, known, nowMs), agentRuns);
    return toMachineState(m, n, nowMs, config.machineLivenessSeconds, busySince.get(m.machine_id), busyRun.get(m.machine_id));
  });

  const input = { nowMs, jobs: pendingDocs.map(toPendingJob), machines: states, policy, weights, expectedJobSeconds: runTimes.fleetSeconds, runnersUp: MAX_RUNNERS_UP };
  // Cross-pool overflow (overflow.ts) widens what the home pass left waiting; without POOL_OVERFLOW it returns it as is.
  const result = await withOverflow(deps, input, schedule(input), opts.jobs === undefined);

  const out: TickResult = {
    pending: pendingDocs.length,
    machines_live: states.filter((s) => s.live).length,
    planned: result.assignments.length,
    assigned: 0,
    lost_races: 0,
    no_slot: 0,
    send_failures: 0,
    unassigned: {},
    wait_notes: 0,
    policy,
  };
  for (const u of result.unassigned) out.unassigned[u.reason] = (out.unassigned[u.reason] ?? 0) + 1;
  recordBacklog(pendingDocs);

  const docs = new Map(pendingDocs.map((d) => [d.id, d]));
  // A queue position (the agent's QUEUE_DEPTH) is a slot of another kind: the ledger holds up to slots + queue_depth.
  const slotsOf = new Map(machines.map((m) => [m.machine_id, m.slots + (m.queue_depth ?? 0)]));
  const byMachine = new Map<string, Assignment[]>();
  for (const a of result.assignments) {
    const list = byMachine.get(a.machineId) ?? [];
    list.push(a);
    byMachine.set(a.machineId, list);
  }

  await mapLimit([...byMachine.entries()], 8, async ([machineId, assignments]) => {
    const candidates: Candidate[] = assignments.map((a) => {
      const d = docs.get(a.jobId)!;
      return { job_id: d.id, tenant_id: d.tenant_id, epoch: d.epoch + 1 };
    });
    const fin = opts.finishedRun;
    const settled = fin?.stored && fin.machineId === machineId ? new Map([[fin.jobId, fin.stored]]) : undefined;
    const { reserved, reservedAtMs, stored: ledger } = await reserveSlots(deps, machineId, slotsOf.get(machineId) ?? 0, candidates, known, settled, ledgers.get(machineId));
    if (ledger) ledgers.set(machineId, ledger); // the snapshot (cached for intake) keeps the ledger's current ETag
    const reservedIds = new Set(reserved.map((c) => c.job_id));
    out.no_slot += assignments.length - reserved.length;
    await mapLimit(
      assignments.filter((a) => reservedIds.has(a.jobId)),
      16,
      async (a) => {
        // A reservation is trusted for RESERVATION_GRACE_MS; a pass that stalled longer lets it go.
        if (deps.now() - reservedAtMs > RESERVATION_GRACE_MS / 2) {
          out.lost_races++;
          return;
        }
        const doc = docs.get(a.jobId)!;
        const stored = await casReplaceJob(deps.jobs, doc, assignedDoc(doc, a, deps.now()));
        if (!stored) {
          out.lost_races++;
          return;
        }
        out.assigned++;
        snapshot.busy.push({ id: stored.id, machine_id: machineId, status: 'assigned', epoch: stored.epoch, assigned_at: stored.assigned_at, claimed_at: null, started_at: null, service_required: stored.service_required });
        await tracePlacement(doc, stored, a, async (traceparent) => {
          try {
            await deps.sender.send(machineId, { job_id: stored.id, epoch: stored.epoch, ...(traceparent ? { traceparent } : {}) });
            return true;
          } catch (err) {
            // The job stays assigned; unclaimed, the reaper re-routes it after CLAIM_TIMEOUT_SECONDS.
            out.send_failures++;
            deps.log.warn({ err: (err as Error).message, job_id: stored.id, machine_id: machineId }, 'dispatch send failed');
            return false;
          }
        });
      },
    );
  });
  if (opts.recordWaits !== false && result.unassigned.length > 0) {
    out.wait_notes = await recordWaitNotes(deps, docs, result.unassigned, nowMs);
  }
  opts.onSnapshot?.(snapshot);
  return out;
}

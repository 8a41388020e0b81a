// Placement on events (issue 14): a job is placed when it arrives and when a slot frees, not only on the timer's next
// pass. The timer stays as the safety net (held jobs, failed sends, not_before retries).
// - placeNewJob: intake's pass over the job it just stored. It plans from a fleet snapshot cached per instance for
//   SNAPSHOT_TTL_MS (re-read when it cannot place the job and is older than SNAPSHOT_RECHECK_MS, unless no machine of
//   its pool is known at all), one read in flight at a time, so a burst of submits costs at most one snapshot read
//   (3 queries) per 200 ms, plus per placed job one ledger read + CAS, one job CAS and one dispatch send.
// - placeIfSlotFreed: a heartbeat that reports fewer running jobs than the one before freed a slot (the agent beats at
//   once after every run), or brought the machine into service (first beat, back from silence, receiving again): one
//   full pass (pending jobs + a fresh snapshot, which also refreshes the cache). A heartbeat
//   that takes the machine out of service (not receiving, draining) drops the cached snapshot.
// - placeAfterOutcome: an agent's `succeeded` report ends its run: the same full pass, not counting that run, before
//   the report is answered (the heartbeat after it would otherwise be on the path to the next start). Not after a
//   failure: the heartbeat after it may say the machine is unhealthy, and must land before the machine gets more work.
// Both are safe against each other and the timer (ledger CAS + job CAS, see ledger.ts) and never throw: a job they
// cannot place stays pending for the next event or timer pass.
import type { CoreDeps } from '../deps.js';
import type { JobDoc } from '../jobs/model.js';
import { isLive, isReceiving, type MachineDoc } from '../machines/model.js';
import { readFleetSnapshot, runSchedulerTick, type FleetSnapshot, type PassOptions, type TickResult } from './tick.js';

/** How long intake trusts a cached fleet snapshot. */
export const SNAPSHOT_TTL_MS = 1_000;

const cached = new WeakMap<object, FleetSnapshot>();
/** The snapshot read in flight, shared: a burst of submits waits for one read instead of starting one each. */
const reading = new WeakMap<object, Promise<FleetSnapshot>>();
/** When a heartbeat last took a machine out of service: snapshots read before then are never cached again. */
const outOfServiceAt = new WeakMap<object, number>();

/** A cached snapshot that could not place the job is re-read when older than this (a machine may have come or freed). */
export const SNAPSHOT_RECHECK_MS = 200;

async function recentSnapshot(deps: CoreDeps, maxAgeMs = SNAPSHOT_TTL_MS): Promise<FleetSnapshot> {
  const hit = cached.get(deps.machines);
  if (hit && deps.now() - hit.readAtMs < maxAgeMs) return hit;
  let pending = reading.get(deps.machines);
  if (!pending) {
    pending = readFleetSnapshot(deps)
      .then((fresh) => {
        remember(deps)(fresh);
        return fresh;
      })
      .finally(() => reading.delete(deps.machines));
    reading.set(deps.machines, pending);
  }
  return pending;
}

/** Whether the view knows any machine of the pool (live or not): with none, looking again soon cannot help. */
const poolKnown = (snapshot: FleetSnapshot, pool: string): boolean => snapshot.machines.some((m) => m.pool === pool);

const remember = (deps: CoreDeps) => (s: FleetSnapshot) => {
  if (s.readAtMs < (outOfServiceAt.get(deps.machines) ?? -Infinity)) return;
  const hit = cached.get(deps.machines);
  if (!hit || hit.readAtMs <= s.readAtMs) cached.set(deps.machines, s);
};

/**
 * A machine left service (a heartbeat said so, an admin drained or deleted it): intake must not plan from a view read
 * before now, or the machine would get work it must not take. Other instances' views are at most SNAPSHOT_TTL_MS old;
 * the reaper re-routes what they send meanwhile.
 */
export function forgetFleetView(deps: CoreDeps): void {
  outOfServiceAt.set(deps.machines, deps.now());
  cached.delete(deps.machines);
  reading.delete(deps.machines); // a read already in flight may predate this change
}

/** Whether event placement is on (PLACEMENT_ON_EVENTS, default true). */
export const placementOnEvents = (deps: CoreDeps): boolean => deps.config.placementOnEvents;

export async function placeNewJob(deps: CoreDeps, doc: JobDoc): Promise<TickResult | null> {
  if (!placementOnEvents(deps) || doc.status !== 'pending') return null;
  try {
    // The first look records no wait reason: its write would move the job's ETag under the second look's CAS.
    const view = await recentSnapshot(deps);
    const first = await runSchedulerTick(deps, { jobs: [doc], snapshot: view, onSnapshot: remember(deps), recordWaits: false });
    if (first.planned > 0) return first;
    // No machine of the pool was ever registered: a fresh view would not place it either (a machine's first beat
    // runs a full pass, below), so spare the reads and let the second look record the wait.
    if (!poolKnown(view, doc.pool)) return await runSchedulerTick(deps, { jobs: [doc], snapshot: view, onSnapshot: remember(deps) });
    // Not placed from the cached view: look once more at a view at most SNAPSHOT_RECHECK_MS old.
    const snapshot = await recentSnapshot(deps, SNAPSHOT_RECHECK_MS);
    return await runSchedulerTick(deps, { jobs: [doc], snapshot, onSnapshot: remember(deps) });
  } catch (err) {
    deps.log.warn({ err: (err as Error).message, job_id: doc.id }, 'placement at intake failed; the timer will place the job');
    return null;
  }
}

/** A heartbeat freed a slot when it reports fewer running jobs than the beat before (the agent beats after every run). */
export function freedSlot(before: MachineDoc, after: MachineDoc): boolean {
  return !after.draining && after.running_jobs.length < before.running_jobs.length;
}

/** A heartbeat took the machine out of service: it stopped receiving dispatches or started draining. */
export function leftService(before: MachineDoc, after: MachineDoc): boolean {
  return (isReceiving(before) && !isReceiving(after)) || (!before.draining && after.draining);
}

/**
 * A heartbeat brought a machine into service: its first beat, or the first after it went silent past the liveness
 * window, stopped receiving or drained. Pending jobs may be waiting for exactly this machine.
 */
export function enteredService(before: MachineDoc, after: MachineDoc, nowMs: number, livenessSeconds: number): boolean {
  if (!isReceiving(after) || after.draining) return false;
  return !isLive(before, nowMs, livenessSeconds) || !isReceiving(before) || before.draining;
}

export async function placeIfSlotFreed(deps: CoreDeps, before: MachineDoc, after: MachineDoc): Promise<void> {
  if (leftService(before, after)) forgetFleetView(deps);
  if (freedSlot(before, after) || enteredService(before, after, deps.now(), deps.config.machineLivenessSeconds)) {
    await placeAfterSlotFreed(deps, after.machine_id);
  }
}

export async function placeAfterSlotFreed(deps: CoreDeps, machineId: string, finishedRun?: PassOptions['finishedRun']): Promise<TickResult | null> {
  if (!placementOnEvents(deps)) return null;
  try {
    return await runSchedulerTick(deps, { onSnapshot: remember(deps), ...(finishedRun ? { finishedRun } : {}) });
  } catch (err) {
    deps.log.warn({ err: (err as Error).message, machine_id: machineId }, 'placement after a finished job failed; the timer will retry');
    return null;
  }
}

/**
 * The agent reported that a run succeeded: its executor has ended, so the slot is free
 * now, not at the heartbeat the agent sends after it. One full pass that does not count that run (the machine's last
 * heartbeat still lists it); answered before the outcome's response, so the next dispatch is in the machine's queue
 * when its receive loop asks again.
 */
export async function placeAfterOutcome(deps: CoreDeps, machineId: string, stored: Pick<JobDoc, 'id' | 'status' | 'machine_id' | 'epoch'>, epoch: number): Promise<TickResult | null> {
  // The outcome's own CAS result frees the run's slot-ledger entry without another read of the job.
  return placeAfterSlotFreed(deps, machineId, { machineId, jobId: stored.id, epoch, stored: { status: stored.status, machine_id: stored.machine_id, epoch: stored.epoch } });
}

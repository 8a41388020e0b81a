// Why a job waited (`job --explain`): the scheduler's reason for leaving a pending job where it is, kept on the job.
// Written only when the reason changes, never per pass: a job that simply waits for a free slot (no record = that)
// costs no write at all; a change to `delayed` (with the holder), `no_machine_in_pool`, or back to `no_capacity` after
// one of those costs one job CAS, at most once per job per WAIT_NOTE_MIN_INTERVAL_MS and at most WAIT_NOTES_PER_PASS
// per pass (oldest jobs first; the rest are noted by later passes). A lost CAS (the job moved on) is simply skipped.
import { MAX_JOB_WAITS, type JobWait, type WaitReason } from '../../../contract/jobs.js';
import type { CoreDeps } from '../deps.js';
import { casReplaceJob } from '../jobs/store.js';
import type { JobDoc } from '../jobs/model.js';
import { mapLimit } from '../map-limit.js';
import type { ScheduleResult, UnassignedReason } from '../scheduler/index.js';

/** A job's wait reason is rewritten at most this often (a reason flapping between passes costs one write per this). */
export const WAIT_NOTE_MIN_INTERVAL_MS = 10_000;
/** Wait notes one pass writes at most. */
export const WAIT_NOTES_PER_PASS = 50;

/** The scheduler's reasons are the wire's (contract/jobs.ts): a new one must be added there first. */
const toWire = (r: UnassignedReason): WaitReason => r;

/** The reason the record implies now: its newest note, or none recorded = waiting for a free slot. */
const currentReason = (doc: JobDoc): { reason: WaitReason; machine_id: string | null; since: string | null } => {
  const last = doc.waits?.at(-1);
  return last ? last : { reason: 'no_capacity', machine_id: null, since: null };
};

/** The note to add for this pass's reason, or null when the record already says so (or said something else too recently). */
export function waitNote(doc: JobDoc, u: ScheduleResult['unassigned'][number], nowMs: number): JobWait | null {
  // Backoff is on the record already (`not_before`, `error`); the timer does not even read such jobs.
  if (u.reason === 'not_before') return null;
  const now = currentReason(doc);
  const machineId = u.machineId ?? null;
  if (now.reason === u.reason && now.machine_id === machineId) return null;
  if (now.since !== null && nowMs - Date.parse(now.since) < WAIT_NOTE_MIN_INTERVAL_MS) return null;
  return { reason: toWire(u.reason), since: new Date(nowMs).toISOString(), machine_id: machineId };
}

/** The job with `note` appended, the oldest notes dropped beyond MAX_JOB_WAITS. Pure. */
export function withWaitNote(doc: JobDoc, note: JobWait): JobDoc {
  return { ...doc, waits: [...(doc.waits ?? []), note].slice(-MAX_JOB_WAITS), updated_at: note.since };
}

/** Writes the changed wait reasons of one pass (bounded, see above); returns how many were written. Never throws. */
export async function recordWaitNotes(
  deps: CoreDeps,
  docs: ReadonlyMap<string, JobDoc>,
  unassigned: ScheduleResult['unassigned'],
  nowMs: number,
): Promise<number> {
  const writes: { doc: JobDoc; note: JobWait }[] = [];
  for (const u of unassigned) {
    const doc = docs.get(u.jobId);
    const note = doc ? waitNote(doc, u, nowMs) : null;
    if (doc && note) writes.push({ doc, note });
  }
  writes.sort((a, b) => (a.doc.created_at < b.doc.created_at ? -1 : a.doc.created_at > b.doc.created_at ? 1 : 0));
  let written = 0;
  await mapLimit(writes.slice(0, WAIT_NOTES_PER_PASS), 8, async ({ doc, note }) => {
    try {
      if (await casReplaceJob(deps.jobs, doc, withWaitNote(doc, note))) written++;
    } catch (err) {
      deps.log.warn({ err: (err as Error).message, job_id: doc.id }, 'could not record why the job waits');
    }
  });
  return written;
}

import { describe, expect, it } from 'vitest';
import { MAX_JOB_WAITS } from '../../../contract/jobs.js';
import type { JobDoc } from '../jobs/model.js';
import { WAIT_NOTE_MIN_INTERVAL_MS, waitNote, withWaitNote } from './wait-notes.js';

const T0 = Date.parse('2026-01-01T00:00:00Z');
const doc = (waits: JobDoc['waits']): JobDoc => ({ id: 'job_1', created_at: new Date(T0).toISOString(), waits }) as JobDoc;

describe('wait notes: written when the reason changes, never per pass', () => {
  it('a job that only waits for a free slot needs no record (none = that)', () => {
    expect(waitNote(doc(undefined), { jobId: 'job_1', reason: 'no_capacity' }, T0)).toBeNull();
    expect(waitNote(doc([]), { jobId: 'job_1', reason: 'no_capacity' }, T0)).toBeNull();
  });

  it('a new reason is noted once; the same reason in later passes is not', () => {
    const first = waitNote(doc([]), { jobId: 'job_1', reason: 'delayed', machineId: 'gpu-2' }, T0);
    expect(first).toEqual({ reason: 'delayed', since: '2026-01-01T00:00:00.000Z', machine_id: 'gpu-2' });
    const noted = withWaitNote(doc([]), first!);
    expect(waitNote(noted, { jobId: 'job_1', reason: 'delayed', machineId: 'gpu-2' }, T0 + 60_000)).toBeNull();
    // Waiting for another holder is a change.
    expect(waitNote(noted, { jobId: 'job_1', reason: 'delayed', machineId: 'gpu-3' }, T0 + 60_000)?.machine_id).toBe('gpu-3');
  });

  it('a reason that flaps is rewritten at most once per interval', () => {
    const noted = withWaitNote(doc([]), { reason: 'no_machine_in_pool', since: new Date(T0).toISOString(), machine_id: null });
    expect(waitNote(noted, { jobId: 'job_1', reason: 'no_capacity' }, T0 + WAIT_NOTE_MIN_INTERVAL_MS - 1)).toBeNull();
    expect(waitNote(noted, { jobId: 'job_1', reason: 'no_capacity' }, T0 + WAIT_NOTE_MIN_INTERVAL_MS)?.reason).toBe('no_capacity');
  });

  it('backoff is not noted (the job record has not_before already)', () => {
    expect(waitNote(doc([]), { jobId: 'job_1', reason: 'not_before' }, T0)).toBeNull();
  });

  it('keeps the newest MAX_JOB_WAITS notes', () => {
    let d = doc([]);
    for (let i = 0; i < MAX_JOB_WAITS + 3; i++) {
      d = withWaitNote(d, { reason: i % 2 ? 'delayed' : 'no_capacity', since: new Date(T0 + i * 1000).toISOString(), machine_id: null });
    }
    expect(d.waits).toHaveLength(MAX_JOB_WAITS);
    expect(d.waits!.at(-1)!.since).toBe(new Date(T0 + (MAX_JOB_WAITS + 2) * 1000).toISOString());
  });
});

// Per-service run times (issue 14, item 3): each busy job's own expected run time (`MachineState.busyRunSeconds`,
// learned per service_required by the tick) decides when its slot frees, for the `start` scorer and the delay rule.
import { describe, expect, it } from 'vitest';
import { schedule, type MachineState, type PendingJob, type ScheduleResult } from './index.js';
import { makeJob, makeMachine, userLora } from '../../../testkit/scheduler-inputs.js';

const NOW = 1_700_000_000_000;
const MB = 1024 * 1024;

function affinity(jobs: PendingJob[], machines: MachineState[], weights: Record<string, number> = {}): ScheduleResult {
  return schedule({ nowMs: NOW, jobs, machines, policy: 'affinity', weights, expectedJobSeconds: 20, defaultDownloadBytesPerSecond: 10 * MB });
}
const job = (id = 'job_1') => makeJob(id, { createdAtMs: NOW - 1000, loras: [userLora('lora_a', 100 * MB)] });

describe('per-service run times in the slot wait', () => {
  it('a queue position behind a long-service job waits its own expected time, not the fleet mean', () => {
    // The busy job started 10 s ago. Fleet mean 20 s → 10 s left; as a 90 s service job → 80 s left.
    const m = (runs?: number[]) =>
      makeMachine('gpu-q', { slots: 1, busySlots: 1, queueDepth: 1, cachedUser: ['lora_a'], busySinceMs: [NOW - 10_000], ...(runs ? { busyRunSeconds: runs } : {}) });
    expect(affinity([job()], [m()], { start: 1, delay: 0 }).assignments[0]!.breakdown.start).toBeCloseTo(-10, 6);
    expect(affinity([job()], [m([90])], { start: 1, delay: 0 }).assignments[0]!.breakdown.start).toBeCloseTo(-80, 6);
    // A short service: 12 s expected, 10 s gone → 2 s left, raised to the floor 0.3 × 12 s = 3.6 s.
    expect(affinity([job()], [m([12])], { start: 1, delay: 0 }).assignments[0]!.breakdown.start).toBeCloseTo(-3.6, 6);
  });

  it('a queued job ahead adds its own run time', () => {
    // One running (started 10 s ago, 20 s service) and one queued (a 60 s service): the next waits 10 + 60 s.
    const m = makeMachine('gpu-q', {
      slots: 1,
      busySlots: 2,
      queueDepth: 2,
      cachedUser: ['lora_a'],
      busySinceMs: [NOW - 10_000, NOW - 1_000],
      busyRunSeconds: [20, 60],
    });
    expect(affinity([job()], [m], { start: 1, delay: 0 }).assignments[0]!.breakdown.start).toBeCloseTo(-70, 6);
  });

  it('the delay rule waits for a holder running a short job, not for one running a long job', () => {
    // The cold machine needs 100 MiB at 5 MiB/s = 20 s; with delay 2 a holder that starts the job within 40 s is worth
    // waiting for. The holder's job started 10 s ago: as a 30 s service it frees in 20 s; as a 120 s one, in 110 s.
    const cold = makeMachine('gpu-cold', { slots: 1, busySlots: 0, downloadBytesPerSecond: 5 * MB });
    const holder = (run: number) =>
      makeMachine('gpu-holder', { slots: 1, busySlots: 1, cachedUser: ['lora_a'], busySinceMs: [NOW - 10_000], busyRunSeconds: [run] });
    const short = affinity([job()], [cold, holder(30)], { delay: 2 });
    expect(short.assignments).toHaveLength(0);
    expect(short.unassigned[0]).toMatchObject({ reason: 'delayed' });
    const long = affinity([job()], [cold, holder(120)], { delay: 2 });
    expect(long.assignments.map((a) => a.machineId)).toEqual(['gpu-cold']);
  });
});

// Queue positions beyond a machine's slots (MachineState.queueDepth) and the earliest-expected-start scorer (`start`),
// plus the egress price (`egress`). Issue 14, downloads that overlap GPU work.
import { describe, expect, it } from 'vitest';
import { schedule, type MachineState, type PendingJob, type ScheduleResult } from './index.js';
import { scheduleExhaustive } from '../../../testkit/scheduler-exhaustive.js';
import { makeJob, makeMachine, seededRandom, syntheticInput, userLora } from '../../../testkit/scheduler-inputs.js';

const NOW = 1_700_000_000_000;
const MB = 1024 * 1024;

function affinity(jobs: PendingJob[], machines: MachineState[], weights: Record<string, number> = {}): ScheduleResult {
  return schedule({ nowMs: NOW, jobs, machines, policy: 'affinity', weights, expectedJobSeconds: 20, defaultDownloadBytesPerSecond: 10 * MB });
}

const jobs = (n: number, loras = [userLora('lora_a', 100 * MB)]): PendingJob[] =>
  Array.from({ length: n }, (_, i) => makeJob(`job_${i}`, { createdAtMs: NOW - 1000 + i, loras }));

describe('queue positions (queueDepth)', () => {
  it('gives a full machine jobs up to slots + queueDepth, never more, for every policy', () => {
    for (const policy of ['fifo', 'adr010', 'affinity']) {
      const machines = [makeMachine('gpu-q', { slots: 1, busySlots: 1, queueDepth: 2 }), makeMachine('gpu-plain', { slots: 1, busySlots: 1 })];
      const r = schedule({ nowMs: NOW, jobs: jobs(5), machines, policy, weights: policy === 'affinity' ? { delay: 0 } : {} });
      expect(r.assignments.map((a) => a.machineId)).toEqual(['gpu-q', 'gpu-q']);
      expect(r.unassigned.filter((u) => u.reason === 'no_capacity')).toHaveLength(3);
    }
  });

  it('treats busySlots above slots + queueDepth as full (no negative capacity)', () => {
    const r = affinity(jobs(2), [makeMachine('gpu-q', { slots: 1, busySlots: 5, queueDepth: 1 })]);
    expect(r.assignments).toHaveLength(0);
  });

  it('with start=1, queues on a holder when the wait there is shorter than a download elsewhere', () => {
    // The holder's only job started 10 s ago (expected 20 s): about 10 s to wait. The cold machine needs 100 MiB at
    // 5 MiB/s = 20 s.
    const holder = makeMachine('gpu-holder', { slots: 1, busySlots: 1, queueDepth: 1, cachedUser: ['lora_a'], busySinceMs: [NOW - 10_000] });
    const cold = makeMachine('gpu-cold', { slots: 1, busySlots: 0, downloadBytesPerSecond: 5 * MB });
    const r = affinity(jobs(1), [cold, holder], { start: 1, delay: 0 });
    expect(r.assignments[0]!.machineId).toBe('gpu-holder');
    expect(r.assignments[0]!.breakdown.start).toBeCloseTo(-10, 6); // max(0, 10 s wait − 0 s download)
  });

  it('with start=1, takes the free machine when the queue wait is longer than its download', () => {
    // The holder's job just started: about 20 s to wait, against a 10 s download on the cold machine.
    const holder = makeMachine('gpu-holder', { slots: 1, busySlots: 1, queueDepth: 1, cachedUser: ['lora_a'], busySinceMs: [NOW] });
    const cold = makeMachine('gpu-cold', { slots: 1, busySlots: 0, downloadBytesPerSecond: 10 * MB });
    const r = affinity(jobs(1), [holder, cold], { start: 1, delay: 0, affinity: 0 });
    expect(r.assignments[0]!.machineId).toBe('gpu-cold');
    expect(r.assignments[0]!.breakdown.start).toBe(0);
  });

  it('counts the download that overlaps the wait: a queue position costs only the wait beyond the download', () => {
    // Both machines are full with a queue position; A's job ends in ~8 s, B's in ~20 s; 100 MiB at 10 MiB/s = 10 s.
    const a = makeMachine('gpu-a', { slots: 1, busySlots: 1, queueDepth: 1, busySinceMs: [NOW - 12_000], downloadBytesPerSecond: 10 * MB });
    const b = makeMachine('gpu-b', { slots: 1, busySlots: 1, queueDepth: 1, busySinceMs: [NOW], downloadBytesPerSecond: 10 * MB });
    const r = affinity(jobs(1), [b, a], { start: 1, delay: 0, hrw: 0 });
    expect(r.assignments[0]!.machineId).toBe('gpu-a');
    expect(r.assignments[0]!.breakdown.start).toBe(0); // the 10 s download hides the 8 s wait
    const onB = affinity(jobs(1), [b], { start: 1, delay: 0, hrw: 0 }).assignments[0]!;
    expect(onB.breakdown.start).toBeCloseTo(-10, 6); // 20 s wait − 10 s download
  });

  it('puts a second queued job behind the first: its expected wait grows by a whole run', () => {
    const m = makeMachine('gpu-q', { slots: 1, busySlots: 1, queueDepth: 2, cachedUser: ['lora_a'], busySinceMs: [NOW - 10_000] });
    const r = affinity(jobs(2), [m], { start: 1, delay: 0 });
    expect(r.assignments.map((x) => x.breakdown.start)).toEqual([-10, -30]);
  });
});

describe('egress price', () => {
  it('charges egress points per GiB missing and can turn the pick to the machine that downloads less', () => {
    const lora = [userLora('lora_big', 1024 * MB), userLora('lora_small', 10 * MB)];
    // gpu-fast lacks the big LoRA but has a fast link; gpu-slow has it and lacks only the small one on a slow link.
    const fast = makeMachine('gpu-fast', { slots: 2, cachedUser: ['lora_small'], downloadBytesPerSecond: 1024 * MB });
    const slow = makeMachine('gpu-slow', { slots: 2, cachedUser: ['lora_big'], downloadBytesPerSecond: 1 * MB });
    const base = { delay: 0, affinity: 0, hrw: 0 };
    expect(affinity(jobs(1, lora), [fast, slow], base).assignments[0]!.machineId).toBe('gpu-fast');
    const priced = affinity(jobs(1, lora), [fast, slow], { ...base, egress: 20 }).assignments[0]!;
    expect(priced.machineId).toBe('gpu-slow');
    expect(priced.breakdown.egress).toBeCloseTo(-20 * (10 / 1024), 9);
  });
});

describe('pruned pick equals exhaustive pick with queues and start/egress on', () => {
  it('on random inputs', () => {
    const random = seededRandom(42);
    for (let round = 0; round < 40; round++) {
      const input = syntheticInput({ seed: 1000 + round, jobs: 30, machines: 12, userKeys: 60, sharedKeys: 10, cachedPerMachine: 10 });
      const machines = input.machines.map((m) => ({ ...m, queueDepth: Math.floor(random() * 3), busySinceMs: Array.from({ length: m.busySlots }, () => input.nowMs - Math.floor(random() * 40_000)) }));
      const weights = { start: 1, egress: random() * 5, delay: round % 2 };
      const fast = schedule({ ...input, machines, policy: 'affinity', weights });
      const slow = scheduleExhaustive({ ...input, machines, policy: 'affinity', weights });
      expect(fast.assignments.map((a) => [a.jobId, a.machineId])).toEqual(slow.assignments.map((a) => [a.jobId, a.machineId]));
    }
  });
});

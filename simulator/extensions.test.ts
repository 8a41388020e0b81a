// The simulator's experiment-only scheduler additions (extensions.ts): they change the pick only when registered, and
// the production scheduler rejects their weights otherwise.
import { describe, expect, it } from 'vitest';
import { schedule, type MachineState, type PendingJob, type ScheduleResult } from '../functions/core/scheduler/index.js';
import { scheduleExhaustive } from '../testkit/scheduler-exhaustive.js';
import { makeJob, makeMachine, seededRandom, syntheticInput, userLora } from '../testkit/scheduler-inputs.js';
import { EVICT, HIT_FIRST } from './extensions.js';

const NOW = 1_700_000_000_000;
const MB = 1024 * 1024;
const GB = 1024 * MB;

function affinity(jobs: PendingJob[], machines: MachineState[], extra: object = {}, ext = {}): ScheduleResult {
  return schedule({ nowMs: NOW, jobs, machines, policy: 'affinity', ...extra }, ext);
}

describe('experiment extensions', () => {
  it('hitFirst: a younger job that hits takes the cached machine, the older cold job the other one', () => {
    const machines = [
      makeMachine('gpu-a', { slots: 2, busySlots: 1, cachedUser: ['lora_hot'] }),
      makeMachine('gpu-b', { slots: 2, busySlots: 1 }),
    ];
    const jobs = [
      makeJob('job_old', { createdAtMs: 1, loras: [userLora('lora_cold')] }),
      makeJob('job_new', { createdAtMs: 2, loras: [userLora('lora_hot')] }),
    ];
    const greedy = affinity(jobs, machines, { weights: { hrw: 0 } });
    expect(greedy.assignments.map((a) => [a.jobId, a.machineId])).toEqual([
      ['job_old', 'gpu-a'],
      ['job_new', 'gpu-b'],
    ]);
    const matched = affinity(jobs, machines, { weights: { hrw: 0 } }, HIT_FIRST);
    // Same jobs routed, listed in routing order; the hit is kept.
    expect(matched.assignments.map((a) => [a.jobId, a.machineId])).toEqual([
      ['job_old', 'gpu-b'],
      ['job_new', 'gpu-a'],
    ]);
    expect(matched.assignments[1]!.hitLoras).toEqual(['lora_hot']);
  });

  it('evict: prefers the machine with free cache space over one that must evict', () => {
    const machines = [
      makeMachine('gpu-full', { slots: 2, usedBytes: 50 * GB, downloadBytesPerSecond: 100 * MB }),
      makeMachine('gpu-room', { slots: 2, busySlots: 1, usedBytes: 10 * GB, downloadBytesPerSecond: 100 * MB }),
    ];
    const job = makeJob('job_1', { loras: [userLora('lora_x', GB)] });
    expect(affinity([job], machines, { weights: { hrw: 0 } }).assignments[0]!.machineId).toBe('gpu-full');
    const r = affinity([job], machines, { weights: { hrw: 0, evict: 1 } }, EVICT);
    expect(r.assignments[0]!.machineId).toBe('gpu-room');
    expect(r.assignments[0]!.breakdown.evict).toBe(0);
  });

  it('production does not know the experiment weights', () => {
    const job = makeJob('job_1', { loras: [userLora('lora_x', GB)] });
    const machines = [makeMachine('gpu-a', { slots: 1 })];
    expect(() => affinity([job], machines, { weights: { evict: 1 } })).toThrow(/Unknown scheduler weight "evict"/);
    expect(() => affinity([job], machines, { weights: { hitFirst: 1 } })).toThrow(/Unknown scheduler weight "hitFirst"/);
    expect(affinity([job], machines).assignments[0]!.breakdown).not.toHaveProperty('evict');
  });

  it('pruning stays lossless with the evict scorer registered', () => {
    for (let seed = 1; seed <= 6; seed++) {
      const random = seededRandom(seed * 17);
      const input = syntheticInput({ seed, jobs: 200, machines: 20 + Math.floor(random() * 40), userKeys: 60 });
      const args = { ...input, policy: 'affinity', weights: { evict: 1 + seed } };
      const pruned = schedule(args, EVICT);
      expect(pruned.assignments.length).toBeGreaterThan(0);
      expect(pruned).toEqual(scheduleExhaustive(args, EVICT));
    }
  });
});

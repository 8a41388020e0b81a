import { describe, expect, it } from 'vitest';
import { hrwTopK, loraSeed, machineSeed } from './hash.js';
import { DEFAULT_WEIGHTS, schedule, type MachineState, type PendingJob, type ScheduleResult } from './index.js';
import { scheduleExhaustive } from '../../../testkit/scheduler-exhaustive.js';
import { makeJob, makeMachine, seededRandom, syntheticInput, userLora } from '../../../testkit/scheduler-inputs.js';

const NOW = 1_700_000_000_000;
const MB = 1024 * 1024;

function affinity(jobs: PendingJob[], machines: MachineState[], extra: object = {}): ScheduleResult {
  return schedule({ nowMs: NOW, jobs, machines, policy: 'affinity', ...extra });
}

function countByMachine(r: ScheduleResult): Map<string, number> {
  const counts = new Map<string, number>();
  for (const a of r.assignments) counts.set(a.machineId, (counts.get(a.machineId) ?? 0) + 1);
  return counts;
}

/** The machine rendezvous hashing makes the home of a user LoRA among `ids` (rank 0 = first choice). */
function hrwHome(key: string, ids: string[], rank = 0): string {
  const seeds = ids.map(machineSeed);
  return ids[hrwTopK(loraSeed('user', key), ids.map((_, i) => i), seeds, rank + 1)[rank]!]!;
}

describe('affinity policy', () => {
  it('prefers a machine holding the LoRA over an idle cold one when load is equal', () => {
    const machines = [
      makeMachine('gpu-cold', { slots: 4, busySlots: 1 }),
      makeMachine('gpu-warm', { slots: 4, busySlots: 1, cachedUser: ['lora_u1'] }),
    ];
    const r = affinity([makeJob('job_1', { loras: [userLora('lora_u1')] })], machines);
    expect(r.assignments[0]).toMatchObject({ machineId: 'gpu-warm', hitLoras: ['lora_u1'], missingLoras: [] });
  });

  it('still prefers the holder over a completely idle cold machine', () => {
    const machines = [
      makeMachine('gpu-idle', { slots: 4 }),
      makeMachine('gpu-warm', { slots: 4, busySlots: 2, cachedUser: ['lora_u1'] }),
    ];
    const r = affinity([makeJob('job_1', { loras: [userLora('lora_u1')] })], machines);
    expect(r.assignments[0]!.machineId).toBe('gpu-warm');
  });

  it('reports a breakdown by scorer whose sum is the score', () => {
    const machines = [makeMachine('gpu-a', { slots: 4, busySlots: 1, cachedUser: ['lora_u1'] })];
    const r = affinity([makeJob('job_1', { loras: [userLora('lora_u1'), userLora('lora_u2', 200 * MB)] })], machines);
    const a = r.assignments[0]!;
    expect(Object.keys(a.breakdown).sort()).toEqual(['affinity', 'avoid', 'download', 'egress', 'hrw', 'load', 'overload', 'start']);
    expect(a.breakdown.affinity).toBe(10);
    expect(a.breakdown.download).toBeCloseTo(-4, 9); // 200 MiB at the default 50 MiB/s
    expect(a.breakdown.load).toBeCloseTo(-0.2 * 0.25 * 30, 9);
    expect(a.breakdown.hrw).toBeCloseTo((DEFAULT_WEIGHTS.hrw * 200) / 300, 9); // the home of the cold 2/3 of the bytes
    expect(a.breakdown.avoid).toBe(0);
    expect(a.breakdown.overload).toBe(0);
    expect(a.breakdown.start).toBe(0); // a free slot: no wait (and weight 0 by default)
    expect(a.breakdown.egress).toBe(0); // no price per GiB by default
    expect(a.score).toBeCloseTo(Object.values(a.breakdown).reduce((s, v) => s + v, 0), 9);
    expect(a).toMatchObject({ hitLoras: ['lora_u1'], missingLoras: ['lora_u2'], arrivingLoras: [] });
  });

  it('weighs missing bytes: the machine that holds the big LoRA wins where adr010 sees a tie', () => {
    const machines = [
      makeMachine('gpu-small', { cachedUser: ['lora_small'] }),
      makeMachine('gpu-big', { cachedUser: ['lora_big'] }),
    ];
    const job = makeJob('job_1', { loras: [userLora('lora_small', 20 * MB), userLora('lora_big', 1500 * MB)] });
    expect(affinity([job], machines).assignments[0]!.machineId).toBe('gpu-big');
    const adr = schedule({ nowMs: NOW, jobs: [job], machines, policy: 'adr010' });
    expect(adr.assignments[0]).toMatchObject({ machineId: 'gpu-small', score: 10 });
  });

  it('sends a cold LoRA to the machine that downloads it fastest', () => {
    const machines = [
      makeMachine('gpu-slow', { downloadBytesPerSecond: 20 * MB }),
      makeMachine('gpu-fast', { downloadBytesPerSecond: 400 * MB }),
    ];
    const r = affinity([makeJob('job_1', { loras: [userLora('lora_x', 1000 * MB)] })], machines);
    expect(r.assignments[0]!.machineId).toBe('gpu-fast');
  });

  it('uses the default download speed for machines that report none', () => {
    const machines = [makeMachine('gpu-unknown'), makeMachine('gpu-slow', { downloadBytesPerSecond: 1 * MB })];
    const job = makeJob('job_1', { loras: [userLora('lora_x', 500 * MB)] });
    expect(affinity([job], machines).assignments[0]!.machineId).toBe('gpu-unknown');
    const slowDefault = affinity([job], machines, { defaultDownloadBytesPerSecond: 0.1 * MB });
    expect(slowDefault.assignments[0]!.machineId).toBe('gpu-slow');
  });

  it('lets a burst for one cold LoRA follow the first job within the pass', () => {
    const ids = ['gpu-0', 'gpu-1', 'gpu-2', 'gpu-3', 'gpu-4', 'gpu-5'];
    const machines = ids.map((id) => makeMachine(id, { slots: 4 }));
    const jobs = [1, 2, 3].map((i) => makeJob(`job_${i}`, { createdAtMs: i, loras: [userLora('lora_burst')] }));
    const r = affinity(jobs, machines);
    const homes = new Set(r.assignments.map((a) => a.machineId));
    expect(homes.size).toBe(1);
    expect(r.assignments.map((a) => a.arrivingLoras)).toEqual([[], ['lora_burst'], ['lora_burst']]);
    expect(r.assignments.map((a) => a.missingLoras)).toEqual([['lora_burst'], ['lora_burst'], ['lora_burst']]);
    expect(r.assignments[1]!.breakdown.affinity).toBe(10);
  });

  it('sends repeated cold jobs for the same LoRA to its rendezvous home across passes, spilling when it is full', () => {
    const ids = ['gpu-0', 'gpu-1', 'gpu-2', 'gpu-3', 'gpu-4', 'gpu-5'];
    const home = hrwHome('lora_cold', ids);
    const second = hrwHome('lora_cold', ids, 1);
    const fleet = (busyOnHome: number) =>
      ids.map((id) => makeMachine(id, { slots: 4, busySlots: id === home ? busyOnHome : 0 }));

    // Each pass is a new tick: the earlier jobs still run on the home and no heartbeat reports the LoRA yet.
    for (let pass = 0; pass < 3; pass++) {
      const r = affinity([makeJob(`job_${pass}`, { loras: [userLora('lora_cold')] })], fleet(pass));
      expect(r.assignments[0]!.machineId).toBe(home);
      expect(r.assignments[0]!.breakdown.hrw).toBe(DEFAULT_WEIGHTS.hrw);
    }
    // Home full: the next rank, and the same one every time.
    for (let pass = 0; pass < 2; pass++) {
      const r = affinity([makeJob(`job_full_${pass}`, { loras: [userLora('lora_cold')] })], fleet(4));
      expect(r.assignments[0]!.machineId).toBe(second);
    }
  });

  it('spreads the homes of different cold LoRAs over the pool', () => {
    const ids = Array.from({ length: 8 }, (_, i) => `gpu-${i}`);
    const machines = () => ids.map((id) => makeMachine(id, { slots: 4 }));
    const chosen = new Set<string>();
    for (let k = 0; k < 40; k++) {
      const r = affinity([makeJob('job_1', { loras: [userLora(`lora_k${k}`)] })], machines());
      expect(r.assignments[0]!.machineId).toBe(hrwHome(`lora_k${k}`, ids));
      chosen.add(r.assignments[0]!.machineId);
    }
    expect(chosen.size).toBeGreaterThanOrEqual(5);
  });

  it('does not pile 50 jobs of one hot LoRA onto one machine while others are idle (bounded load)', () => {
    const machines = () =>
      ['gpu-a', 'gpu-b', 'gpu-c', 'gpu-d', 'gpu-e'].map((id) =>
        makeMachine(id, { slots: 64, cachedUser: id === 'gpu-a' ? ['lora_hot'] : [] }),
      );
    const jobs = Array.from({ length: 50 }, (_, i) =>
      makeJob(`job_${String(i).padStart(2, '0')}`, { createdAtMs: i, loras: [userLora('lora_hot')] }),
    );
    const bounded = countByMachine(affinity(jobs, machines()));
    expect(bounded.size).toBeGreaterThanOrEqual(3);
    expect(Math.max(...bounded.values())).toBeLessThanOrEqual(20);
    expect([...bounded.values()].reduce((s, n) => s + n, 0)).toBe(50);

    // Without the bound, affinity alone would put every job on the holder.
    const unbounded = countByMachine(affinity(jobs, machines(), { weights: { overload: 0 } }));
    expect(unbounded.get('gpu-a')).toBe(50);
  });

  it('lets small machines fill up with their LoRA (the bound starts above loadBoundMinSlots)', () => {
    const machines = [
      makeMachine('gpu-a', { slots: 4, cachedUser: ['lora_hot'] }),
      ...[1, 2, 3, 4, 5, 6].map((i) => makeMachine(`gpu-${i}`, { slots: 4 })),
    ];
    const jobs = [1, 2, 3, 4].map((i) => makeJob(`job_${i}`, { createdAtMs: i, loras: [userLora('lora_hot')] }));
    expect(countByMachine(affinity(jobs, machines)).get('gpu-a')).toBe(4);
  });

  it('avoids a machine where an earlier attempt was lost, unless it is clearly better', () => {
    const twins = [makeMachine('gpu-a', { slots: 2 }), makeMachine('gpu-b', { slots: 2 })];
    const retry = makeJob('job_1', { attempt: 2, avoidMachines: ['gpu-a'] });
    const r = affinity([retry], twins);
    expect(r.assignments[0]!.machineId).toBe('gpu-b');

    // The avoided machine holds a 2 GB LoRA: the penalty is small next to the download it saves.
    const holder = [
      makeMachine('gpu-a', { slots: 2, cachedUser: ['lora_big'] }),
      makeMachine('gpu-b', { slots: 2 }),
    ];
    const bigRetry = makeJob('job_2', { attempt: 2, avoidMachines: ['gpu-a'], loras: [userLora('lora_big', 2048 * MB)] });
    const r2 = affinity([bigRetry], holder);
    expect(r2.assignments[0]).toMatchObject({ machineId: 'gpu-a' });
    expect(r2.assignments[0]!.breakdown.avoid).toBe(-DEFAULT_WEIGHTS.avoid);
  });

  it('spreads LoRA-less jobs over the least-loaded machines', () => {
    const machines = [
      makeMachine('gpu-a', { slots: 4, busySlots: 3 }),
      makeMachine('gpu-b', { slots: 4, busySlots: 1 }),
      makeMachine('gpu-c', { slots: 4, busySlots: 2 }),
    ];
    const r = affinity([makeJob('job_1')], machines);
    expect(r.assignments[0]!.machineId).toBe('gpu-b');
  });

  it('routes every job even when weights are all zero', () => {
    const zero = Object.fromEntries(Object.keys(DEFAULT_WEIGHTS).map((k) => [k, k === 'loadBound' ? 1 : 0]));
    const machines = [makeMachine('gpu-a', { slots: 2 }), makeMachine('gpu-b', { slots: 2 })];
    const jobs = [1, 2, 3, 4].map((i) => makeJob(`job_${i}`, { createdAtMs: i, loras: [userLora('lora_x')] }));
    const r = affinity(jobs, machines, { weights: zero });
    expect(r.assignments).toHaveLength(4);
    expect(r.assignments.map((a) => a.machineId)).toEqual(['gpu-a', 'gpu-a', 'gpu-b', 'gpu-b']);
  });

  it('breaks exact ties by machine input order, also against machines it did not enumerate', () => {
    // Every machine holds the widespread LoRA; the cold one has a home (a candidate) that, without an HRW bonus, ties
    // with every other idle machine. The first machine in input order must win.
    const ids = Array.from({ length: 30 }, (_, i) => `gpu-${String(i).padStart(2, '0')}`);
    const machines = ids.map((id) => makeMachine(id, { slots: 2, cachedShared: ['common.safetensors'] }));
    let cold = 0;
    while (hrwHome(`lora_cold${cold}`, ids) === 'gpu-00') cold++;
    const job = makeJob('job_1', {
      loras: [{ kind: 'shared', key: 'common.safetensors', sizeBytes: 300 * MB }, userLora(`lora_cold${cold}`)],
    });
    const r = affinity([job], machines, { weights: { hrw: 0 } });
    expect(r.assignments[0]!.machineId).toBe('gpu-00');
    // With its HRW bonus the home wins instead.
    const withHrw = affinity([job], machines);
    expect(withHrw.assignments[0]!.machineId).toBe(hrwHome(`lora_cold${cold}`, ids));
  });

  it('picks exactly what scoring every machine would pick (candidate pruning is lossless)', () => {
    let compared = 0;
    for (let seed = 1; seed <= 12; seed++) {
      const random = seededRandom(seed * 31);
      const input = syntheticInput({
        seed,
        jobs: 300,
        machines: 20 + Math.floor(random() * 60),
        userKeys: 80,
        sharedKeys: 12,
        cachedPerMachine: 10 + Math.floor(random() * 30),
        slots: [1, 1 + Math.floor(random() * 12)],
        zipf: random() * 1.5,
      });
      // Half the runs with a load weight of zero (the walk cannot prune: the pass scores the pool).
      const weights = seed % 4 === 0 ? { load: 0 } : seed % 3 === 0 ? { loadBound: 1.1, loadBoundMinSlots: 1 } : {};
      const args = { ...input, policy: 'affinity', weights };
      const pruned = schedule(args);
      const exhaustive = scheduleExhaustive(args);
      expect(pruned).toEqual(exhaustive);
      compared += pruned.assignments.length;
      // Runners-up too: the walk that prunes against the last runner-up finds exactly the exhaustive top 3.
      if (seed % 5 === 0) expect(schedule({ ...args, runnersUp: 3 })).toEqual(scheduleExhaustive({ ...args, runnersUp: 3 }));
    }
    expect(compared).toBeGreaterThan(500);
  });
});

describe('affinity: delay scheduling', () => {
  const GB = 1024 * MB;
  // gpu-holder is full; its two jobs were assigned 25 s ago (expected run 30 s): a slot should free in
  // max(30 − 25, 0.3 × 30) = 9 s. Downloading the 1 GiB LoRA on the idle gpu-cold takes 1 GiB / 100 MiB/s ≈ 10.2 s.
  const world = (busySinceMs: number[] | null = [NOW - 25_000, NOW - 25_000]): MachineState[] => [
    makeMachine('gpu-cold', { slots: 2, downloadBytesPerSecond: 100 * MB }),
    makeMachine('gpu-holder', {
      slots: 2,
      busySlots: 2,
      cachedUser: ['lora_big'],
      downloadBytesPerSecond: 100 * MB,
      ...(busySinceMs ? { busySinceMs } : {}),
    }),
  ];
  const bigJob = (id: string, ageMs = 0): PendingJob =>
    makeJob(id, { createdAtMs: NOW - ageMs, loras: [userLora('lora_big', GB)] });

  it('is on by default (delay 2, cap 30 s); delay 0 turns it off and the job downloads on the free machine', () => {
    // 9 s of expected wait ≤ 2 × 10.2 s of download, age 0 + 9 s ≤ 30 s.
    expect(affinity([bigJob('job_1')], world()).unassigned).toEqual([{ jobId: 'job_1', reason: 'delayed', machineId: 'gpu-holder' }]);
    const r = affinity([bigJob('job_1')], world(), { weights: { delay: 0 } });
    expect(r.assignments.map((a) => a.machineId)).toEqual(['gpu-cold']);
    // Without busySinceMs the holder's first slot is expected in 30 s / 2 slots = 15 s, still ≤ 20.4 s.
    expect(affinity([bigJob('job_1')], world(null)).unassigned[0]?.reason).toBe('delayed');
    // A job that would download nothing anywhere better is never held: the holder has a free slot.
    const open = world();
    open[1] = { ...open[1]!, busySlots: 1, busySinceMs: [NOW] };
    expect(affinity([bigJob('job_1')], open).assignments.map((a) => a.machineId)).toEqual(['gpu-holder']);
  });

  it('holds a job back for a busy holder that frees a slot sooner than the download elsewhere', () => {
    const r = affinity([bigJob('job_1')], world(), { weights: { delay: 1, delayCapSeconds: 60 } });
    expect(r.assignments).toEqual([]);
    expect(r.unassigned).toEqual([{ jobId: 'job_1', reason: 'delayed', machineId: 'gpu-holder' }]);
  });

  it('does not wait when the holder is expected to free later than k × the download time', () => {
    // Jobs assigned just now: the holder frees a slot in about 30 s, more than 1 × 10 s of download.
    const r = affinity([bigJob('job_1')], world([NOW, NOW]), { weights: { delay: 1, delayCapSeconds: 60 } });
    expect(r.assignments.map((a) => a.machineId)).toEqual(['gpu-cold']);
    // With k = 4 the wait (≈ 30 s) is within 4 × 10 s and the cap.
    const r4 = affinity([bigJob('job_1')], world([NOW, NOW]), { weights: { delay: 4, delayCapSeconds: 60 } });
    expect(r4.unassigned).toEqual([{ jobId: 'job_1', reason: 'delayed', machineId: 'gpu-holder' }]);
  });

  it('never holds a job past delayCapSeconds of age', () => {
    const weights = { delay: 10, delayCapSeconds: 12 };
    expect(affinity([bigJob('job_1', 2_000)], world(), { weights }).unassigned[0]?.reason).toBe('delayed');
    // 4 s old + 9 s of expected wait > 12 s: it goes now, and downloads.
    const r = affinity([bigJob('job_1', 4_000)], world(), { weights });
    expect(r.assignments.map((a) => a.machineId)).toEqual(['gpu-cold']);
  });

  it('gives the slot a held-back job leaves to the next job in routing order', () => {
    const machines = world();
    const next = makeJob('job_2', { createdAtMs: NOW - 1, loras: [userLora('lora_x')] });
    const r = affinity([bigJob('job_1', 1_000), next], [machines[0]!, { ...machines[1]!, slots: 2, busySlots: 2 }], {
      weights: { delay: 1, delayCapSeconds: 60 },
    });
    expect(r.assignments.map((a) => [a.jobId, a.machineId])).toEqual([['job_2', 'gpu-cold']]);
    expect(r.unassigned).toEqual([{ jobId: 'job_1', reason: 'delayed', machineId: 'gpu-holder' }]);
  });

  it('counts held-back jobs against the holder: the second waiter expects the next slot', () => {
    // Slots free in 9 s and 29 s (assigned 25 s and 1 s ago): the second job would wait 29 s > 2 × 10.2 s.
    const machines = world([NOW - 25_000, NOW - 1_000]);
    const r = affinity([bigJob('job_1', 2), bigJob('job_2', 1)], machines, { weights: { delay: 2, delayCapSeconds: 60 } });
    expect(r.unassigned).toEqual([{ jobId: 'job_1', reason: 'delayed', machineId: 'gpu-holder' }]);
    expect(r.assignments.map((a) => [a.jobId, a.machineId])).toEqual([['job_2', 'gpu-cold']]);
  });
});

describe('runners-up (job --explain)', () => {
  const machines = () => [
    makeMachine('gpu-a', { slots: 4, busySlots: 1 }),
    makeMachine('gpu-b', { slots: 4, busySlots: 1, cachedUser: ['lora_u1'] }),
    makeMachine('gpu-c', { slots: 4, busySlots: 3 }),
    makeMachine('gpu-d', { slots: 4, busySlots: 2, cachedUser: ['lora_u1'] }),
  ];
  const job = () => makeJob('job_1', { loras: [userLora('lora_u1', 100 * MB)] });

  it('are off by default: the simulator and the benchmark pay nothing', () => {
    expect(affinity([job()], machines()).assignments[0]!.runnersUp).toBeUndefined();
  });

  it('keep the next best scored machines, best first, each with a breakdown that sums to its score', () => {
    const a = affinity([job()], machines(), { runnersUp: 3 }).assignments[0]!;
    expect(a.machineId).toBe('gpu-b');
    const ups = a.runnersUp!;
    // Every other machine with a free slot is a runner-up, in score order.
    expect(ups.map((r) => r.machineId).sort()).toEqual(['gpu-a', 'gpu-c', 'gpu-d']);
    expect(ups[0]!.machineId).toBe('gpu-d'); // the other holder beats both cold machines
    for (let i = 1; i < ups.length; i++) expect(ups[i - 1]!.score).toBeGreaterThanOrEqual(ups[i]!.score);
    expect(ups.every((r) => r.score <= a.score)).toBe(true);
    for (const r of ups) expect(r.score).toBeCloseTo(Object.values(r.breakdown).reduce((s, v) => s + v, 0), 9);
    expect(Object.keys(ups[0]!.breakdown).sort()).toEqual(Object.keys(a.breakdown).sort());
  });

  it('never exceed the number asked for, and do not change the pick', () => {
    const one = affinity([job()], machines(), { runnersUp: 1 });
    const none = affinity([job()], machines());
    expect(one.assignments[0]!.runnersUp).toHaveLength(1);
    expect(one.assignments[0]!.machineId).toBe(none.assignments[0]!.machineId);
    expect(one.assignments[0]!.score).toBe(none.assignments[0]!.score);
  });

  it('adr010 lists the other holders with their points; fifo lists none', () => {
    const adr = schedule({ nowMs: NOW, jobs: [job()], machines: machines(), policy: 'adr010', runnersUp: 3 }).assignments[0]!;
    expect(adr.machineId).toBe('gpu-b');
    expect(adr.runnersUp).toEqual([{ machineId: 'gpu-d', score: adr.score, breakdown: { affinity: adr.score } }]);
    const fifo = schedule({ nowMs: NOW, jobs: [job()], machines: machines(), policy: 'fifo', runnersUp: 3 }).assignments[0]!;
    expect(fifo.runnersUp).toBeUndefined();
  });
});

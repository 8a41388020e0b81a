import { describe, expect, it } from 'vitest';
import { policyNames, schedule, type MachineState, type PendingJob, type ScheduleResult } from './index.js';
import { makeJob, makeMachine, seededRandom, sharedLora, syntheticInput, userLora } from '../../../testkit/scheduler-inputs.js';

const NOW = 1_700_000_000_000;

function run(policy: string, jobs: PendingJob[], machines: MachineState[], extra: object = {}): ScheduleResult {
  return schedule({ nowMs: NOW, jobs, machines, policy, ...extra });
}

function machineOf(result: ScheduleResult, jobId: string): string | undefined {
  return result.assignments.find((a) => a.jobId === jobId)?.machineId;
}

function reasonOf(result: ScheduleResult, jobId: string): string | undefined {
  return result.unassigned.find((u) => u.jobId === jobId)?.reason;
}

describe('adr010 policy (ADR-010 greedy scoring)', () => {
  const machines = () => [
    makeMachine('gpu-b', { slots: 2 }),
    makeMachine('gpu-a', { slots: 2, busySlots: 1, cachedUser: ['lora_u1'], cachedShared: ['style.safetensors'] }),
    makeMachine('gpu-c', { slots: 2 }),
  ];

  it('scores +10 for a cached user LoRA and picks that machine', () => {
    const r = run('adr010', [makeJob('job_1', { loras: [userLora('lora_u1')] })], machines());
    expect(r.assignments).toHaveLength(1);
    expect(r.assignments[0]).toMatchObject({
      jobId: 'job_1',
      machineId: 'gpu-a',
      score: 10,
      breakdown: { affinity: 10 },
      hitLoras: ['lora_u1'],
      missingLoras: [],
      policy: 'adr010',
    });
  });

  it('scores +5 for a cached shared LoRA and +15 for both', () => {
    const shared = run('adr010', [makeJob('job_s', { loras: [sharedLora('style.safetensors')] })], machines());
    expect(shared.assignments[0]).toMatchObject({ machineId: 'gpu-a', score: 5 });
    const both = run(
      'adr010',
      [makeJob('job_b', { loras: [userLora('lora_u1'), sharedLora('style.safetensors')] })],
      machines(),
    );
    expect(both.assignments[0]).toMatchObject({ machineId: 'gpu-a', score: 15, hitLoras: ['lora_u1', 'style.safetensors'] });
  });

  it('keeps user and shared keys apart', () => {
    // A shared file that happens to be spelled like the user LoRA id is not a hit.
    const r = run('adr010', [makeJob('job_1', { loras: [sharedLora('lora_u1')] })], machines());
    expect(r.assignments[0]).toMatchObject({ machineId: 'gpu-b', score: 0, missingLoras: ['lora_u1'] });
  });

  it('honours configured points', () => {
    const r = run('adr010', [makeJob('job_1', { loras: [userLora('lora_u1')] })], machines(), {
      weights: { userHit: 20 },
    });
    expect(r.assignments[0]).toMatchObject({ machineId: 'gpu-a', score: 20 });
  });

  it('breaks ties by machine input order', () => {
    const ms = [
      makeMachine('gpu-x', { cachedUser: ['lora_u2'] }),
      makeMachine('gpu-y', { cachedUser: ['lora_u1'] }),
      makeMachine('gpu-z', { cachedUser: ['lora_u1'] }),
    ];
    const r = run('adr010', [makeJob('job_1', { loras: [userLora('lora_u1')] })], ms);
    expect(machineOf(r, 'job_1')).toBe('gpu-y');
  });

  it('sees only the reported cache: a LoRA sent earlier in the pass is not a hit', () => {
    const ms = [makeMachine('gpu-a', { slots: 2 }), makeMachine('gpu-b', { slots: 2 })];
    const jobs = [makeJob('job_1', { loras: [userLora('lora_new')] }), makeJob('job_2', { loras: [userLora('lora_new')] })];
    const r = run('adr010', jobs, ms);
    expect(r.assignments.map((a) => a.score)).toEqual([0, 0]);
    expect(r.assignments[1]!.arrivingLoras).toEqual(['lora_new']);
  });
});

describe('every policy', () => {
  for (const policy of policyNames) {
    describe(policy, () => {
      it('routes a job whose LoRAs no machine caches (routing never blocks on the cache)', () => {
        const ms = [makeMachine('gpu-a', { cachedUser: ['lora_other'] }), makeMachine('gpu-b')];
        const r = run(policy, [makeJob('job_1', { loras: [userLora('lora_cold')] })], ms);
        expect(r.unassigned).toEqual([]);
        expect(r.assignments).toHaveLength(1);
        expect(r.assignments[0]!.missingLoras).toEqual(['lora_cold']);
        expect(r.assignments[0]!.hitLoras).toEqual([]);
      });

      it('routes a job with no LoRAs', () => {
        const r = run(policy, [makeJob('job_1')], [makeMachine('gpu-a')]);
        expect(machineOf(r, 'job_1')).toBe('gpu-a');
      });

      it('respects pools', () => {
        const ms = [
          makeMachine('std-1', { pool: 'standard', slots: 4, cachedUser: ['lora_u1'] }),
          makeMachine('heavy-1', { pool: 'heavy', slots: 1 }),
        ];
        const jobs = [
          makeJob('job_h1', { pool: 'heavy', loras: [userLora('lora_u1')], createdAtMs: 1 }),
          makeJob('job_h2', { pool: 'heavy', loras: [userLora('lora_u1')], createdAtMs: 2 }),
          makeJob('job_g', { pool: 'gpu-xl' }),
        ];
        const r = run(policy, jobs, ms);
        expect(machineOf(r, 'job_h1')).toBe('heavy-1');
        // The standard machine has room and the LoRA, but it is not a heavy machine.
        expect(reasonOf(r, 'job_h2')).toBe('no_capacity');
        expect(reasonOf(r, 'job_g')).toBe('no_machine_in_pool');
      });

      it('never uses dead, draining or not-receiving machines', () => {
        const ms = [
          makeMachine('gpu-dead', { live: false, slots: 8, cachedUser: ['lora_u1'] }),
          makeMachine('gpu-drain', { draining: true, slots: 8, cachedUser: ['lora_u1'] }),
          // Live, idle and holding the LoRA, but its heartbeat says its session is held by another receiver.
          makeMachine('gpu-busy-session', { receiving: false, slots: 8, cachedUser: ['lora_u1'] }),
          makeMachine('gpu-ok', { slots: 1, receiving: true }),
        ];
        const jobs = [1, 2, 3].map((i) => makeJob(`job_${i}`, { loras: [userLora('lora_u1')], createdAtMs: i }));
        const r = run(policy, jobs, ms);
        expect(r.assignments.map((a) => a.machineId)).toEqual(['gpu-ok']);
        expect(r.unassigned).toEqual([
          { jobId: 'job_2', reason: 'no_capacity' },
          { jobId: 'job_3', reason: 'no_capacity' },
        ]);
      });

      it('reports no_machine_in_pool when the pool only has dead, draining or not-receiving machines', () => {
        const ms = [makeMachine('gpu-dead', { live: false }), makeMachine('gpu-drain', { draining: true }), makeMachine('gpu-busy-session', { receiving: false })];
        const r = run(policy, [makeJob('job_1')], ms);
        expect(r.unassigned).toEqual([{ jobId: 'job_1', reason: 'no_machine_in_pool' }]);
      });

      it('routes by priority, then age, then id', () => {
        const ms = [makeMachine('gpu-a', { slots: 3 })];
        const jobs = [
          makeJob('job_old_low', { priority: 1, createdAtMs: 1 }),
          makeJob('job_new_high', { priority: 9, createdAtMs: 50 }),
          makeJob('job_b', { priority: 5, createdAtMs: 10 }),
          makeJob('job_a', { priority: 5, createdAtMs: 10 }),
          makeJob('job_older', { priority: 5, createdAtMs: 5 }),
        ];
        const r = run(policy, jobs, ms);
        expect(r.assignments.map((a) => a.jobId)).toEqual(['job_new_high', 'job_older', 'job_a']);
        expect(r.unassigned.map((u) => [u.jobId, u.reason])).toEqual([
          ['job_old_low', 'no_capacity'],
          ['job_b', 'no_capacity'],
        ]);
      });

      it('orders by priority even when values do not pack (fractional priority, negative time)', () => {
        const ms = [makeMachine('gpu-a', { slots: 2 })];
        const jobs = [
          makeJob('job_1', { priority: 2.5, createdAtMs: -10 }),
          makeJob('job_2', { priority: 3, createdAtMs: 100 }),
          makeJob('job_3', { priority: 2.5, createdAtMs: -20 }),
        ];
        const r = run(policy, jobs, ms);
        expect(r.assignments.map((a) => a.jobId)).toEqual(['job_2', 'job_3']);
      });

      it('skips jobs in backoff (notBeforeMs in the future)', () => {
        const ms = [makeMachine('gpu-a', { slots: 4 })];
        const jobs = [
          makeJob('job_later', { notBeforeMs: NOW + 1, priority: 9 }),
          makeJob('job_due', { notBeforeMs: NOW }),
          makeJob('job_past', { notBeforeMs: NOW - 1000 }),
        ];
        const r = run(policy, jobs, ms);
        expect(r.assignments.map((a) => a.jobId).sort()).toEqual(['job_due', 'job_past']);
        expect(r.unassigned).toEqual([{ jobId: 'job_later', reason: 'not_before' }]);
      });

      it('gives every assignment a breakdown whose sum is the score', () => {
        const ms = [makeMachine('gpu-a', { slots: 2, cachedUser: ['lora_u1'] }), makeMachine('gpu-b', { slots: 2 })];
        const jobs = [makeJob('job_1', { loras: [userLora('lora_u1')] }), makeJob('job_2', { loras: [userLora('lora_u9')] })];
        const r = run(policy, jobs, ms);
        expect(r.assignments).toHaveLength(2);
        for (const a of r.assignments) {
          expect(Object.keys(a.breakdown).length).toBeGreaterThan(0);
          const sum = Object.values(a.breakdown).reduce((s, v) => s + v, 0);
          expect(a.score).toBeCloseTo(sum, 9);
          expect(a.policy).toBe(policy);
        }
      });

      it('assigns a repeated job id at most once', () => {
        const ms = [makeMachine('gpu-a', { slots: 4 })];
        const r = run(policy, [makeJob('job_1'), makeJob('job_1'), makeJob('job_2')], ms);
        expect(r.assignments.map((a) => a.jobId).sort()).toEqual(['job_1', 'job_2']);
      });
    });
  }

  it('fifo takes the first machine in input order that passes the filters', () => {
    const ms = [
      makeMachine('gpu-dead', { live: false }),
      makeMachine('gpu-full', { slots: 2, busySlots: 2 }),
      makeMachine('gpu-other-pool', { pool: 'heavy' }),
      makeMachine('gpu-first', { slots: 1 }),
      makeMachine('gpu-second', { slots: 1, cachedUser: ['lora_u1'] }),
    ];
    const jobs = [makeJob('job_1', { loras: [userLora('lora_u1')], createdAtMs: 1 }), makeJob('job_2', { createdAtMs: 2 })];
    const r = run('fifo', jobs, ms);
    expect(r.assignments.map((a) => [a.jobId, a.machineId, a.score])).toEqual([
      ['job_1', 'gpu-first', 1],
      ['job_2', 'gpu-second', 1],
    ]);
    expect(r.assignments[0]!.breakdown).toEqual({ fifo: 1 });
  });

  it('throws on an unknown policy, listing the valid ones', () => {
    expect(() => run('round-robin', [makeJob('job_1')], [makeMachine('gpu-a')])).toThrow(
      /Unknown scheduler policy "round-robin".*affinity, adr010, fifo/,
    );
  });

  it('throws on an unknown weight name', () => {
    expect(() => run('affinity', [], [], { weights: { affinty: 2 } })).toThrow(/Unknown scheduler weight "affinty"/);
  });
});

describe('properties over random inputs', () => {
  const seeds = [1, 2, 3, 4, 5, 6, 7, 8];

  function randomInput(seed: number) {
    const random = seededRandom(seed * 7919);
    const input = syntheticInput({
      seed,
      jobs: 200 + Math.floor(random() * 400),
      machines: 10 + Math.floor(random() * 40),
      userKeys: 60,
      sharedKeys: 10,
      cachedPerMachine: 15,
      slots: [1, 1 + Math.floor(random() * 8)],
      dead: 0.1,
      draining: 0.1,
      pools: [
        { name: 'standard', share: 0.6 },
        { name: 'heavy', share: 0.3 },
        { name: 'rare', share: 0.1 },
      ],
    });
    return input;
  }

  for (const policy of policyNames) {
    it(`${policy}: filters and capacity hold, each job is accounted for exactly once`, () => {
      for (const seed of seeds) {
        const input = randomInput(seed);
        const r = schedule({ ...input, policy });
        const byId = new Map(input.machines.map((m) => [m.id, m]));
        const jobById = new Map(input.jobs.map((j) => [j.id, j]));
        const perMachine = new Map<string, number>();
        for (const a of r.assignments) {
          const m = byId.get(a.machineId)!;
          const job = jobById.get(a.jobId)!;
          expect(m.live && !m.draining).toBe(true);
          expect(m.pool).toBe(job.pool);
          expect(job.notBeforeMs === undefined || job.notBeforeMs <= input.nowMs).toBe(true);
          perMachine.set(m.id, (perMachine.get(m.id) ?? 0) + 1);
        }
        for (const [id, count] of perMachine) {
          const m = byId.get(id)!;
          expect(count).toBeLessThanOrEqual(m.slots - m.busySlots);
        }
        const accounted = [...r.assignments.map((a) => a.jobId), ...r.unassigned.map((u) => u.jobId)];
        expect(new Set(accounted).size).toBe(accounted.length);
        expect(accounted.length).toBe(input.jobs.length);
        expect(r.assignments.length).toBeGreaterThan(0);

        // No job waits for capacity while a later job of its pool got a slot; the pass never leaves a usable slot.
        const order = [...input.jobs].sort(
          (a, b) => b.priority - a.priority || a.createdAtMs - b.createdAtMs || (a.id < b.id ? -1 : 1),
        );
        const rank = new Map(order.map((j, i) => [j.id, i]));
        const lastAssigned = new Map<string, number>();
        for (const a of r.assignments) {
          const pool = jobById.get(a.jobId)!.pool;
          lastAssigned.set(pool, Math.max(lastAssigned.get(pool) ?? -1, rank.get(a.jobId)!));
        }
        for (const u of r.unassigned.filter((x) => x.reason === 'no_capacity')) {
          const pool = jobById.get(u.jobId)!.pool;
          expect(rank.get(u.jobId)!).toBeGreaterThan(lastAssigned.get(pool) ?? -1);
          const free = input.machines
            .filter((m) => m.pool === pool && m.live && !m.draining)
            .reduce((s, m) => s + Math.max(0, m.slots - m.busySlots), 0);
          const used = r.assignments.filter((a) => byId.get(a.machineId)!.pool === pool).length;
          expect(used).toBe(free);
        }
        // Assignments come in routing order.
        const ranks = r.assignments.map((a) => rank.get(a.jobId)!);
        expect(ranks).toEqual([...ranks].sort((a, b) => a - b));
      }
    });

    it(`${policy}: same input → same output, whatever the job order`, () => {
      for (const seed of seeds.slice(0, 3)) {
        const input = randomInput(seed);
        const first = schedule({ ...input, policy });
        expect(schedule({ ...input, policy })).toEqual(first);
        const shuffled = [...input.jobs];
        const random = seededRandom(seed);
        for (let i = shuffled.length - 1; i > 0; i--) {
          const j = Math.floor(random() * (i + 1));
          [shuffled[i], shuffled[j]] = [shuffled[j]!, shuffled[i]!];
        }
        expect(schedule({ ...input, jobs: shuffled, policy }).assignments).toEqual(first.assignments);
      }
    });
  }

  it('adr010 always picks a machine with the highest ADR score', () => {
    const adrScore = (m: MachineState, job: PendingJob): number =>
      job.loras
        .filter((l, i) => job.loras.findIndex((o) => o.kind === l.kind && o.key === l.key) === i)
        .reduce((s, l) => {
          const cached = (l.kind === 'user' ? m.cachedUser : m.cachedShared).has(l.key);
          return s + (cached ? (l.kind === 'user' ? 10 : 5) : 0);
        }, 0);
    let scored = 0;
    for (const seed of seeds) {
      const input = randomInput(seed);
      const r = schedule({ ...input, policy: 'adr010' });
      const byId = new Map(input.machines.map((m) => [m.id, m]));
      const jobById = new Map(input.jobs.map((j) => [j.id, j]));
      const used = new Map<string, number>();
      for (const a of r.assignments) used.set(a.machineId, (used.get(a.machineId) ?? 0) + 1);
      // A machine with a slot still free after the pass had one when each job was routed.
      const stillFree = input.machines.filter(
        (m) => m.live && !m.draining && m.slots - m.busySlots - (used.get(m.id) ?? 0) > 0,
      );
      for (const a of r.assignments) {
        const job = jobById.get(a.jobId)!;
        expect(a.score).toBe(adrScore(byId.get(a.machineId)!, job));
        for (const other of stillFree.filter((m) => m.pool === job.pool)) {
          expect(adrScore(other, job)).toBeLessThanOrEqual(a.score);
        }
        if (a.score > 0) scored++;
      }
    }
    expect(scored).toBeGreaterThan(0);
  });
});

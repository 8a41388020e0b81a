import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../config.js';
import { parseOverflowRoutes, scheduleWithOverflow, type MachineState, type PendingJob, type PoolOverflow } from './index.js';
import { makeJob, makeMachine, userLora } from '../../../testkit/scheduler-inputs.js';

const NOW = 1_700_000_000_000;
const sample = (JSON.parse(readFileSync(new URL('../../../local.settings.sample.json', import.meta.url), 'utf8')) as { Values: Record<string, string> }).Values;

const routes = (text: string) => Object.fromEntries(parseOverflowRoutes(text));

describe('POOL_OVERFLOW parsing', () => {
  it('reads the compact spelling and JSON alike, targets in order of preference', () => {
    const want = { 'gpu-a': ['gpu-b', 'gpu-c'], 'gpu-b': ['gpu-a'] };
    expect(routes('gpu-a>gpu-b,gpu-c;gpu-b>gpu-a')).toEqual(want);
    expect(routes(' gpu-a > gpu-b , gpu-c ; gpu-b>gpu-a ; ')).toEqual(want);
    expect(routes('{"gpu-a":["gpu-b","gpu-c"],"gpu-b":["gpu-a"]}')).toEqual(want);
  });

  it('is off when unset or blank', () => {
    expect(parseOverflowRoutes(undefined).size).toBe(0);
    expect(parseOverflowRoutes('  ').size).toBe(0);
  });

  it.each([
    ['gpu-a', /not a route; write pool>target/],
    ['gpu-a>', /not a route/],
    ['gpu-a>gpu-a', /gpu-a lists itself/],
    ['gpu-a>gpu-b,gpu-b', /gpu-a lists gpu-b twice/],
    ['gpu-a>gpu-b;gpu-a>gpu-c', /gpu-a has two routes/],
    ['GPU-A>gpu-b', /"GPU-A" is not a pool name/],
    ['gpu-a>gpu b', /"gpu b" is not a pool name/],
    ['gpu-a>gpu-b,', /"" is not a pool name/],
    ['{"gpu-a":', /not valid JSON/],
    ['{"gpu-a":"gpu-b"}', /must map each pool to a list of pool names/],
    ['{"gpu-a":[]}', /lists no pool to overflow to/],
  ])('refuses %j', (text, message) => {
    expect(() => parseOverflowRoutes(text)).toThrow(message);
  });

  it('stops startup naming the setting, and reads the threshold', () => {
    expect(() => loadConfig({ ...sample, POOL_OVERFLOW: 'gpu-a>gpu-a' })).toThrow(/Invalid app setting POOL_OVERFLOW: pool gpu-a lists itself/);
    expect(() => loadConfig({ ...sample, POOL_OVERFLOW: 'gpu-a>gpu-b', POOL_OVERFLOW_THRESHOLD_SECONDS: 'soon' })).toThrow(/Invalid app setting POOL_OVERFLOW_THRESHOLD_SECONDS/);
    const off = loadConfig(sample);
    expect(off.poolOverflow.size).toBe(0);
    const on = loadConfig({ ...sample, POOL_OVERFLOW: 'gpu-a>gpu-b', POOL_OVERFLOW_THRESHOLD_SECONDS: '45' });
    expect(Object.fromEntries(on.poolOverflow)).toEqual({ 'gpu-a': ['gpu-b'] });
    expect(on.poolOverflowThresholdSeconds).toBe(45);
    expect(off.poolOverflowThresholdSeconds).toBe(30);
  });
});

describe('cross-pool overflow (widening after the home pass)', () => {
  const A = 'gpu-a';
  const B = 'gpu-b';
  const C = 'gpu-c';
  const on = (text = 'gpu-a>gpu-b', thresholdSeconds = 30): PoolOverflow => ({ routes: parseOverflowRoutes(text), thresholdSeconds });
  const job = (id: string, o: Partial<PendingJob> = {}) => makeJob(id, { pool: A, createdAtMs: NOW - 1000, ...o });
  const run = (jobs: PendingJob[], machines: MachineState[], overflow: PoolOverflow | null, policy = 'affinity') =>
    scheduleWithOverflow({ nowMs: NOW, jobs, machines, policy, expectedJobSeconds: 30 }, overflow);
  // Pool A: one machine, its slot busy. One pending job: wait ceil((1 - 0 + 1) / 1) × 30 s = 60 s.
  const busyA = () => makeMachine('a-1', { pool: A, busySlots: 1 });

  it.each(['affinity', 'adr010', 'fifo'])('%s: a job of an overloaded pool runs in its listed pool, and says why', (policy) => {
    const r = run([job('j1')], [busyA(), makeMachine('b-1', { pool: B })], on(), policy);
    expect(r.unassigned).toEqual([]);
    expect(r.assignments).toHaveLength(1);
    expect(r.assignments[0]).toMatchObject({
      jobId: 'j1',
      machineId: 'b-1',
      overflow: { fromPool: A, toPool: B, fromWaitSeconds: 60, toWaitSeconds: 0, thresholdSeconds: 30 },
    });
  });

  it('off (no routes, or none configured): the job waits in its pool', () => {
    for (const overflow of [null, on('')]) {
      const r = run([job('j1')], [busyA(), makeMachine('b-1', { pool: B })], overflow);
      expect(r.assignments).toEqual([]);
      expect(r.unassigned).toEqual([{ jobId: 'j1', reason: 'no_capacity' }]);
    }
  });

  it('never overflows under the threshold, nor to a pool not listed, nor from a pool without a route', () => {
    const machines = () => [busyA(), makeMachine('b-1', { pool: B }), makeMachine('c-1', { pool: C })];
    expect(run([job('j1')], machines(), on('gpu-a>gpu-b', 60)).assignments).toEqual([]); // 60 s is not over 60 s
    expect(run([job('j1')], [busyA(), makeMachine('c-1', { pool: C })], on('gpu-a>gpu-b')).assignments).toEqual([]);
    expect(run([job('j1', { pool: C }), job('j2')], [makeMachine('c-1', { pool: C, busySlots: 1 }), makeMachine('a-1', { pool: A }), makeMachine('b-1', { pool: B })], on('gpu-a>gpu-b')).assignments.map((a) => [a.jobId, a.machineId])).toEqual([['j2', 'a-1']]);
  });

  it('the home pool keeps first claim: only what it cannot place overflows, and never beyond the target’s slots', () => {
    const r = run(
      [job('j1', { createdAtMs: NOW - 3000 }), job('j2', { createdAtMs: NOW - 2000 }), job('j3', { createdAtMs: NOW - 1000 })],
      [makeMachine('a-1', { pool: A }), makeMachine('b-1', { pool: B })],
      on(),
    );
    expect(r.assignments.map((a) => [a.jobId, a.machineId, a.overflow?.toPool])).toEqual([
      ['j1', 'a-1', undefined],
      ['j2', 'b-1', B],
    ]);
    expect(r.unassigned).toEqual([{ jobId: 'j3', reason: 'no_capacity' }]);
  });

  it('tries the targets in order: the next one when the first has no free slot left', () => {
    // B: both slots busy, nothing pending: wait ceil(1/2) × 30 = 30 s, not over the threshold, but no slot this pass.
    const r = run([job('j1')], [busyA(), makeMachine('b-1', { pool: B, slots: 2, busySlots: 2 }), makeMachine('c-1', { pool: C })], on('gpu-a>gpu-b,gpu-c'));
    expect(r.assignments[0]).toMatchObject({ machineId: 'c-1', overflow: { toPool: C, toWaitSeconds: 0 } });
  });

  it('skips a target whose own wait is over the threshold', () => {
    // B: one slot, busy, two jobs of its own pending: wait ceil(3/1) × 30 = 90 s.
    const jobs = [job('j1'), job('b1', { pool: B }), job('b2', { pool: B })];
    const r = run(jobs, [busyA(), makeMachine('b-1', { pool: B, busySlots: 1 }), makeMachine('b-2', { pool: B, live: false })], on());
    expect(r.assignments).toEqual([]);
  });

  it('applies affinity and every machine filter in the overflow pool as at home', () => {
    const lora = userLora('lora_x');
    const machines = [
      busyA(),
      makeMachine('b-1', { pool: B }),
      makeMachine('b-2', { pool: B, cachedUser: ['lora_x'] }),
      makeMachine('b-3', { pool: B, cachedUser: ['lora_x'], draining: true }),
      makeMachine('b-4', { pool: B, cachedUser: ['lora_x'], receiving: false }),
      makeMachine('b-5', { pool: B, cachedUser: ['lora_x'], acceptsWork: false }),
      makeMachine('b-6', { pool: B, cachedUser: ['lora_x'], live: false }),
    ];
    const r = run([job('j1', { loras: [lora] })], machines, on());
    expect(r.assignments[0]).toMatchObject({ machineId: 'b-2', hitLoras: ['lora_x'], overflow: { toPool: B } });
    // Only filtered-out machines in B: B has no machine that may take work, so it is no target at all.
    const filtered = run([job('j1')], [busyA(), ...machines.slice(3)], on());
    expect(filtered.assignments).toEqual([]);
  });

  it('a pool no machine serves (wait unknown) overflows; a job in backoff never does', () => {
    const r = run([job('j1'), job('j2', { notBeforeMs: NOW + 5000 })], [makeMachine('b-1', { pool: B, slots: 2 })], on());
    expect(r.assignments).toHaveLength(1);
    expect(r.assignments[0]).toMatchObject({ jobId: 'j1', machineId: 'b-1', overflow: { fromPool: A, fromWaitSeconds: null } });
    expect(r.unassigned).toEqual([{ jobId: 'j2', reason: 'not_before' }]);
  });

  it('counts pending jobs the caller gives (intake passes one job but the pool has more waiting)', () => {
    // A has a free slot (wait 0 for its one pass job), but 3 more are pending there: ceil((4 - 1 + 1) / 1) × 30 = 120 s.
    // The home pass places j1 on a-1 regardless; a second pass job would overflow only with the true counts.
    const machines = [makeMachine('a-1', { pool: A }), makeMachine('b-1', { pool: B })];
    const input = { nowMs: NOW, jobs: [job('j1'), job('j2')], machines, policy: 'affinity', expectedJobSeconds: 30 };
    const few = scheduleWithOverflow(input, on('gpu-a>gpu-b', 60)); // counted from the pass: 2 pending, wait 60 s
    expect(few.assignments.map((a) => a.machineId)).toEqual(['a-1']);
    const many = scheduleWithOverflow(input, on('gpu-a>gpu-b', 60), new Map([[A, 4]]));
    expect(many.assignments.map((a) => [a.machineId, a.overflow?.fromWaitSeconds])).toEqual([['a-1', undefined], ['b-1', 120]]);
  });
});

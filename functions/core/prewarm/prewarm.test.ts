import { describe, expect, it } from 'vitest';
import { emptyDemand, observeJobs, rateAt, type DemandJob } from './demand.js';
import { chooseHints, DEFAULT_HINT_OPTIONS, type HintMachine } from './hints.js';
import { hrwTopK, loraSeed, machineSeed } from '../scheduler/hash.js';

const HALF = 600_000;
const opts = { halfLifeMs: HALF, minRate: 1e-6, maxEntries: 100 };
const job = (id: string, atMs: number, key = 'lora_a', pool = 'standard'): DemandJob => ({ id, pool, createdAtMs: atMs, loras: [{ kind: 'user', key, sizeBytes: 100 }] });

describe('demand tracker', () => {
  it('settles at the arrival rate of a steady stream and halves every half-life once it stops', () => {
    const jobs = Array.from({ length: 7200 }, (_, i) => job(`j${i}`, i * 1000)); // 1 job/s for 2 h
    let state = emptyDemand();
    for (let t = 0; t <= 7200_000; t += 60_000) state = observeJobs(state, jobs.filter((j) => j.createdAtMs <= t), t, opts).state;
    const e = state.entries[0]!;
    expect(rateAt(e, 7200_000, HALF)).toBeGreaterThan(0.95);
    expect(rateAt(e, 7200_000, HALF)).toBeLessThan(1.05);
    expect(rateAt(e, 7200_000 + HALF, HALF) / rateAt(e, 7200_000, HALF)).toBeCloseTo(0.5, 6);
  });

  it('counts each job once across runs, also jobs created at the watermark instant', () => {
    const a = observeJobs(emptyDemand(), [job('a', 1000), job('b', 2000)], 2000, opts);
    expect(a.counted).toBe(2);
    const again = observeJobs(a.state, [job('b', 2000), job('c', 2000)], 2000, opts);
    expect(again.counted).toBe(1); // b was counted, c is new at the same instant
    const once = observeJobs(again.state, [job('b', 2000), job('c', 2000)], 2000, opts);
    expect(once.counted).toBe(0);
    expect(once.state.entries[0]!.rate).toBeCloseTo(again.state.entries[0]!.rate, 12);
  });

  it('forgets faded entries and keeps at most maxEntries, the highest rates', () => {
    const jobs = [job('a', 0, 'lora_x'), job('b', 0, 'lora_y'), job('c', 0, 'lora_y')];
    const s = observeJobs(emptyDemand(), jobs, 0, { ...opts, maxEntries: 1 }).state;
    expect(s.entries.map((e) => e.key)).toEqual(['lora_y']);
    const faded = observeJobs(s, [], 20 * HALF, { ...opts, minRate: 1e-6 }).state;
    expect(faded.entries).toEqual([]);
  });
});

describe('hint choice', () => {
  const machine = (id: string, cached: string[] = [], over: Partial<HintMachine> = {}): HintMachine => ({
    id,
    pool: 'standard',
    slots: 2,
    eligible: true,
    cachedUser: new Set(cached),
    cachedShared: new Set(),
    budgetBytes: 1000,
    hinted: new Set(),
    ...over,
  });
  // 0.2 jobs/s × 20 s = 4 jobs at once.
  const hot = { pool: 'standard', kind: 'user' as const, key: 'lora_hot', sizeBytes: 100, rate: 0.2, atMs: 0 };
  const ids = ['m0', 'm1', 'm2', 'm3', 'm4', 'm5'];
  const rank = (key: string) => hrwTopK(loraSeed('user', key), ids.map((_, i) => i), ids.map(machineSeed), ids.length).map((i) => ids[i]!);

  const opts = { ...DEFAULT_HINT_OPTIONS, headroom: 0.5 };

  it('hints the next HRW home that lacks the LoRA when demand outgrows the holders', () => {
    const [first, second] = rank('lora_hot');
    const machines = ids.map((id) => machine(id, id === first ? ['lora_hot'] : []));
    const hints = chooseHints([hot], machines, 20, 0, opts);
    expect(hints).toEqual([expect.objectContaining({ machineId: second, key: 'lora_hot', holderSlots: 2 })]);
    expect(hints[0]!.need).toBeCloseTo(4, 9);
  });

  it('sends nothing while the holders have headroom, to a machine already hinted, or past the budget', () => {
    const order = rank('lora_hot');
    const many = ids.map((id) => machine(id, order.slice(0, 4).includes(id) ? ['lora_hot'] : []));
    expect(chooseHints([hot], many, 20, 0, opts)).toEqual([]); // 4 holders × 2 slots × 0.5 = 4 ≥ 4
    expect(chooseHints([hot], many, 20, 0).map((h) => h.machineId)).toEqual([order[4]]); // default 0.03: 4 > 0.24
    const hinted = ids.map((id) => machine(id, id === order[0] ? ['lora_hot'] : [], id === order[1] ? { hinted: new Set(['lora_hot']) } : {}));
    // The hinted machine counts as a holder: 2 holders × 2 × 0.5 = 2 < 4, so the third home is next.
    expect(chooseHints([hot], hinted, 20, 0, opts).map((h) => h.machineId)).toEqual([order[2]]);
    const small = ids.map((id) => machine(id, id === order[0] ? ['lora_hot'] : [], id === order[1] ? { budgetBytes: 50 } : {}));
    expect(chooseHints([hot], small, 20, 0, opts).map((h) => h.machineId)).toEqual([order[2]]);
  });

  it('gives a LoRA without holders its first home only from minColdNeed, skips ineligible machines and other pools', () => {
    const order = rank('lora_hot');
    const machines = ids.map((id) => machine(id, [], id === order[0] ? { eligible: false } : {}));
    expect(chooseHints([{ ...hot, rate: 0.01 }], machines, 20, 0, opts)).toEqual([]); // 0.2 < 0.5
    expect(chooseHints([hot], machines, 20, 0, opts).map((h) => h.machineId)).toEqual([order[1]]);
    expect(chooseHints([{ ...hot, pool: 'gpu-xl' }], machines, 20, 0, opts)).toEqual([]);
  });

  it('bounds hints per pass and per machine, highest demand first', () => {
    const one = [machine('m0', ['lora_a', 'lora_b']), machine('m1')];
    const demand = [
      { ...hot, key: 'lora_a', rate: 0.1 },
      { ...hot, key: 'lora_b', rate: 0.3 },
    ];
    const hints = chooseHints(demand, one, 20, 0, opts);
    expect(hints.map((h) => [h.machineId, h.key])).toEqual([['m1', 'lora_b']]); // m1 takes one hint at a time
  });
});

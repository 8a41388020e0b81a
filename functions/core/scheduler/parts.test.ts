// Unit tests of the scheduler's building blocks: hashing, the indexed heap, job selection, weights and policy names.
import { describe, expect, it } from 'vitest';
import { fnv1a32, hrwTopK, hrwWeight, loraSeed, machineSeed } from './hash.js';
import { IndexedHeap } from './heap.js';
import { compareJobs, firstInOrder } from './order.js';
import { makeJob, seededRandom } from '../../../testkit/scheduler-inputs.js';
import {
  DEFAULT_POLICY,
  DEFAULT_WEIGHTS,
  assertPolicyName,
  isPolicyName,
  policyNames,
  resolveWeights,
  weightNames,
} from './weights.js';

describe('rendezvous hashing', () => {
  it('uses standard FNV-1a', () => {
    expect(fnv1a32('')).toBe(0x811c9dc5);
    expect(fnv1a32('a')).toBe(0xe40c292c);
    expect(fnv1a32('foobar')).toBe(0xbf9cf968);
  });

  it('ranks machines by weight, best first, whatever the candidate order', () => {
    const ids = Array.from({ length: 50 }, (_, i) => `gpu-${i}`);
    const seeds = ids.map(machineSeed);
    const key = loraSeed('user', 'lora_abc');
    const all = ids.map((_, i) => i);
    const top = hrwTopK(key, all, seeds, 5);
    const expected = [...all].sort((a, b) => hrwWeight(key, seeds[b]!) - hrwWeight(key, seeds[a]!)).slice(0, 5);
    expect(top).toEqual(expected);
    expect(hrwTopK(key, [...all].reverse(), seeds, 5)).toEqual(expected);
  });

  it('moves only the keys whose home leaves the pool', () => {
    const ids = Array.from({ length: 12 }, (_, i) => `gpu-${i}`);
    const seeds = ids.map(machineSeed);
    const all = ids.map((_, i) => i);
    const without3 = all.filter((i) => i !== 3);
    let moved = 0;
    for (let k = 0; k < 1000; k++) {
      const key = loraSeed('user', `lora_${k}`);
      const before = hrwTopK(key, all, seeds, 1)[0]!;
      const after = hrwTopK(key, without3, seeds, 1)[0]!;
      if (before !== 3) expect(after).toBe(before);
      else moved++;
    }
    expect(moved).toBeGreaterThan(40);
    expect(moved).toBeLessThan(130);
  });

  it('spreads homes evenly', () => {
    const ids = Array.from({ length: 10 }, (_, i) => `machine-${i}`);
    const seeds = ids.map(machineSeed);
    const counts = new Array<number>(10).fill(0);
    for (let k = 0; k < 5000; k++) counts[hrwTopK(loraSeed('shared', `f${k}.safetensors`), ids.map((_, i) => i), seeds, 1)[0]!]!++;
    for (const c of counts) {
      expect(c).toBeGreaterThan(350);
      expect(c).toBeLessThan(650);
    }
  });

  it('keeps user keys and shared file names apart', () => {
    expect(loraSeed('user', 'same')).not.toBe(loraSeed('shared', 'same'));
  });
});

describe('IndexedHeap', () => {
  it('keeps heap order through pushes, re-keys and removals, and walks in order', () => {
    const random = seededRandom(42);
    const key = new Float64Array(200);
    const heap = new IndexedHeap(200, (a, b) => key[a]! < key[b]! || (key[a] === key[b] && a < b));
    const present = new Set<number>();
    for (let step = 0; step < 3000; step++) {
      const id = Math.floor(random() * 200);
      const op = random();
      if (op < 0.4) {
        key[id] = Math.floor(random() * 50);
        if (present.has(id)) heap.update(id);
        else heap.push(id);
        present.add(id);
      } else if (op < 0.6) {
        heap.remove(id);
        present.delete(id);
      } else if (present.has(id)) {
        key[id] = Math.floor(random() * 50);
        heap.update(id);
      }
      if (step % 100 === 0) {
        const expected = [...present].sort((a, b) => key[a]! - key[b]! || a - b);
        const walked: number[] = [];
        heap.walk((x) => {
          walked.push(x);
          return true;
        });
        expect(walked).toEqual(expected);
        const first: number[] = [];
        heap.firstK(3, first);
        expect(first).toEqual(expected.slice(0, 3));
        expect(heap.size).toBe(present.size);
      }
    }
  });

  it('stops walking when told to', () => {
    const heap = new IndexedHeap(10, (a, b) => a < b);
    for (const id of [5, 3, 8, 1]) heap.push(id);
    const seen: number[] = [];
    heap.walk((id) => {
      seen.push(id);
      return id < 3;
    });
    expect(seen).toEqual([1, 3]);
  });
});

describe('firstInOrder', () => {
  it('selects the k first jobs in routing order, sorted', () => {
    const random = seededRandom(7);
    const jobs = Array.from({ length: 500 }, (_, i) =>
      makeJob(`job_${i}`, { priority: Math.floor(random() * 10), createdAtMs: Math.floor(random() * 100) }),
    );
    const cmp = (a: number, b: number) => compareJobs(jobs[a]!, jobs[b]!) || a - b;
    const all = jobs.map((_, i) => i);
    const sorted = [...all].sort(cmp);
    for (const k of [0, 1, 37, 499, 500, 800]) {
      const { first, rest } = firstInOrder(all, k, cmp);
      expect(first).toEqual(sorted.slice(0, k));
      expect([...rest].sort(cmp)).toEqual(sorted.slice(k));
    }
  });
});

describe('weights and policy names', () => {
  it('lists the policies, with the default among them', () => {
    expect([...policyNames]).toEqual(['affinity', 'adr010', 'fifo']);
    expect(isPolicyName(DEFAULT_POLICY)).toBe(true);
    expect(isPolicyName('nope')).toBe(false);
    expect(assertPolicyName('adr010')).toBe('adr010');
    expect(() => assertPolicyName('ADR010')).toThrow(/Valid policies: affinity, adr010, fifo/);
  });

  it('overlays overrides on the defaults and rejects bad ones', () => {
    expect(resolveWeights()).toEqual(DEFAULT_WEIGHTS);
    expect(resolveWeights({ hrw: 0, load: 1.5 })).toEqual({ ...DEFAULT_WEIGHTS, hrw: 0, load: 1.5 });
    expect(weightNames).toContain('userHit');
    expect(() => resolveWeights({ bogus: 1 })).toThrow(/Unknown scheduler weight "bogus". Valid weights: userHit/);
    expect(() => resolveWeights({ load: -1 })).toThrow(/"load" must be a finite number ≥ 0/);
    expect(() => resolveWeights({ load: Number.NaN })).toThrow(/"load"/);
    expect(() => resolveWeights({ loadBound: 0.5 })).toThrow(/"loadBound" must be ≥ 1/);
  });
});

describe('machine filters', () => {
  it('are registered once each, and refuse exactly what their name says', async () => {
    const { MACHINE_FILTERS } = await import('./registry.js');
    const { makeMachine } = await import('../../../testkit/scheduler-inputs.js');
    expect(MACHINE_FILTERS.map((f) => f.name)).toEqual(['live', 'not-draining', 'receiving', 'accepts-work']);
    const verdicts = (m: Parameters<(typeof MACHINE_FILTERS)[number]['accepts']>[0]) => MACHINE_FILTERS.map((f) => f.accepts(m));
    expect(verdicts(makeMachine('a'))).toEqual([true, true, true, true]);
    expect(verdicts(makeMachine('b', { live: false }))).toEqual([false, true, true, true]);
    expect(verdicts(makeMachine('c', { draining: true }))).toEqual([true, false, true, true]);
    expect(verdicts(makeMachine('d', { receiving: false }))).toEqual([true, true, false, true]);
    expect(verdicts(makeMachine('e', { receiving: true }))).toEqual([true, true, true, true]);
    expect(verdicts(makeMachine('f', { acceptsWork: false }))).toEqual([true, true, true, false]);
  });
});

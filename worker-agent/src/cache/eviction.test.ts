import { describe, expect, it } from 'vitest';
import { formatBytes, GIB, planEviction, planTtlSweep, type CacheEntryLike } from './eviction.js';

const e = (key: string, sizeBytes: number, lastUsedMs: number, extra: Partial<CacheEntryLike> = {}): CacheEntryLike => ({
  key,
  sizeBytes,
  lastUsedMs,
  pinned: false,
  inUse: 0,
  ...extra,
});

describe('planEviction', () => {
  it('evicts nothing when the new bytes fit', () => {
    expect(planEviction([e('a', 40, 1), e('b', 40, 2)], 20, 100)).toEqual({ evict: [] });
  });

  it('evicts least recently used first, only as many as needed', () => {
    const entries = [e('new', 30, 30), e('old', 30, 10), e('mid', 30, 20)];
    expect(planEviction(entries, 20, 100)).toEqual({ evict: ['old'] });
    expect(planEviction(entries, 50, 100)).toEqual({ evict: ['old', 'mid'] });
  });

  it('skips pinned and in-use entries', () => {
    const entries = [e('pinned', 30, 1, { pinned: true }), e('busy', 30, 2, { inUse: 2 }), e('free', 30, 3)];
    expect(planEviction(entries, 30, 100)).toEqual({ evict: ['free'] });
  });

  it('counts reserved bytes against the budget', () => {
    expect(planEviction([e('a', 30, 1)], 30, 100, 50)).toEqual({ evict: ['a'] });
    expect(planEviction([e('a', 30, 1)], 30, 100, 20)).toEqual({ evict: [] });
  });

  it('returns a readable error when pinned/in-use entries leave no room', () => {
    const entries = [e('p', 30 * GIB, 1, { pinned: true }), e('u', 18.9 * GIB, 2, { inUse: 1 }), e('f', 0.5 * GIB, 3)];
    const plan = planEviction(entries, 1.2 * GIB, 50 * GIB);
    expect(plan).toEqual({ error: 'cache full: need 1.2 GiB, budget 50 GiB, 49 GiB pinned or in use' });
  });

  it('refuses a file larger than the whole budget', () => {
    const plan = planEviction([], 101, 100);
    expect('error' in plan && plan.error).toMatch(/larger than the whole budget/);
  });
});

describe('planTtlSweep', () => {
  it('returns only stale, unpinned, unused keys, oldest first', () => {
    const day = 86_400_000;
    const now = 100 * day;
    const entries = [
      e('stale-b', 1, now - 9 * day),
      e('stale-a', 1, now - 10 * day),
      e('fresh', 1, now - 1 * day),
      e('stale-pinned', 1, now - 30 * day, { pinned: true }),
      e('stale-busy', 1, now - 30 * day, { inUse: 1 }),
    ];
    expect(planTtlSweep(entries, now, 7 * day)).toEqual(['stale-a', 'stale-b']);
  });
});

describe('formatBytes', () => {
  it('uses binary units', () => {
    expect(formatBytes(512)).toBe('512 bytes');
    expect(formatBytes(1536)).toBe('1.5 KiB');
    expect(formatBytes(50 * GIB)).toBe('50 GiB');
  });
});

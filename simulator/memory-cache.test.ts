import { describe, expect, it } from 'vitest';
import { MemoryLruCache } from './memory-cache.js';

describe('MemoryLruCache', () => {
  it('counts hits, misses, downloads, evictions and thrash within the window', () => {
    let now = 0;
    const c = new MemoryLruCache({ budgetBytes: 100, clock: () => now, pinned: ['sys'] });
    expect(c.access('sys', 40)).toEqual({ hit: false, evicted: [] });
    now = 1;
    expect(c.access('a', 30)).toEqual({ hit: false, evicted: [] });
    now = 2;
    expect(c.access('a', 30)).toEqual({ hit: true, evicted: [] });
    now = 3;
    expect(c.access('b', 30)).toEqual({ hit: false, evicted: [] });
    now = 4;
    // 40 + 30 + 30 = 100: adding c (30) evicts the LRU unpinned entry, a (used at 2) before b (3).
    expect(c.access('c', 30)).toEqual({ hit: false, evicted: ['a'] });
    expect(c.usedBytes).toBe(100);
    now = 5;
    expect(c.access('a', 30)).toEqual({ hit: false, evicted: ['b'] }); // re-download 1 ms after eviction: thrash
    expect(c.counters).toEqual({ hits: 1, misses: 5, downloads: 5, bytes_downloaded: 160, evictions: 2, thrash: 1 });

    now = 5 + 2 * 3_600_000; // b was evicted two hours ago: not thrash
    c.access('b', 30);
    expect(c.counters.thrash).toBe(1);
    expect(c.has('sys')).toBe(true);
  });

  it('protects in-use keys and reports an error when nothing can be evicted', () => {
    const c = new MemoryLruCache({ budgetBytes: 100 });
    c.add('a', 50, 1);
    c.add('b', 50, 2);
    c.markInUse('a');
    c.markInUse('b');
    const r = c.access('c', 10, 3);
    expect(r.hit).toBe(false);
    expect('error' in r && r.error).toMatch(/^cache full/);
    expect(c.keys().sort()).toEqual(['a', 'b']);
    c.release('b', 4);
    expect(c.access('c', 10, 5)).toEqual({ hit: false, evicted: ['b'] });
  });

  it('sweeps by TTL without touching pinned entries', () => {
    const c = new MemoryLruCache({ budgetBytes: 1000, pinned: ['p'] });
    c.add('p', 1, 0);
    c.add('x', 1, 0);
    c.add('y', 1, 900);
    expect(c.sweepTtl(1000, 500)).toEqual(['x']);
    expect(c.keys().sort()).toEqual(['p', 'y']);
    expect(c.counters.evictions).toBe(1);
  });
});

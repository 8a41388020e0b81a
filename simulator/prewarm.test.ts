// Pre-warm hints in the simulator (prewarm.ts + the engine's Hint events) on W0: with thresholds at 0 every LoRA with
// demand earns copies, so hints are sent, fetched and their bytes counted, while the engine's invariants (budget,
// in-use protection, complete xor downloading, every job started once with its LoRAs) are checked after every event.
import { describe, expect, it } from 'vitest';
import { simulate } from './engine.js';
import { MemoryLruCache } from './memory-cache.js';
import { roomWithoutRecentEvictions } from './prewarm.js';
import { WORKLOADS, generateWorkload } from './workloads.js';

const workload = generateWorkload(WORKLOADS.W0, 7);
const bytes = (r: ReturnType<typeof simulate>) => r.machines.reduce((s, m) => s + m.bytesDownloaded, 0);

describe('pre-warm hints in the simulator', () => {
  it('sends and fetches hints under the invariant checks, and counts their bytes', () => {
    const off = simulate(workload, { policy: 'affinity', checkInvariants: true });
    const on = simulate(workload, { policy: 'affinity', checkInvariants: true, prewarm: { headroom: 0, minColdNeed: 0, minIdleEvictMs: 0 } });
    expect(off.prewarm).toBeUndefined();
    expect(on.prewarm!.hints).toBeGreaterThan(0);
    expect(on.prewarm!.fetched).toBeGreaterThan(0);
    expect(on.prewarm!.fetched + on.prewarm!.declined + on.prewarm!.dropped).toBeLessThanOrEqual(on.prewarm!.hints);
    expect(on.starts.every((s) => s === 1)).toBe(true);
    // Downloads = job misses + hint fetches: the hints' bytes are in the total.
    const downloads = on.machines.reduce((s, m) => s + m.downloads, 0);
    expect(downloads).toBe(on.loraMisses + on.prewarm!.fetched);
    expect(bytes(on)).toBeGreaterThan(0);
  });

  it('is deterministic, and the default thresholds send fewer hints than none', () => {
    const a = simulate(workload, { policy: 'affinity', prewarm: { headroom: 0, minColdNeed: 0 } });
    const b = simulate(workload, { policy: 'affinity', prewarm: { headroom: 0, minColdNeed: 0 } });
    expect(b.prewarm).toEqual(a.prewarm);
    expect(Array.from(b.startMs)).toEqual(Array.from(a.startMs));
    const dflt = simulate(workload, { policy: 'affinity', prewarm: {} });
    expect(dflt.prewarm!.hints).toBeLessThan(a.prewarm!.hints);
  });

  it('the agent rule: room only by evicting entries idle long enough, never pinned or in use', () => {
    const c = new MemoryLruCache({ budgetBytes: 100, pinned: ['pin'] });
    c.add('pin', 30, 0);
    c.add('old', 30, 0);
    c.add('new', 30, 50_000);
    c.markInUse('new');
    expect(roomWithoutRecentEvictions(c, 10, 100, 60_000, 30_000)).toBe(true); // fits: 90 + 10
    expect(roomWithoutRecentEvictions(c, 40, 100, 60_000, 30_000)).toBe(true); // evicts 'old' (idle 60 s)
    expect(roomWithoutRecentEvictions(c, 40, 100, 60_000, 90_000)).toBe(false); // 'old' idle only 60 s
    expect(roomWithoutRecentEvictions(c, 50, 100, 60_000, 0)).toBe(false); // would need 'pin' or the in-use 'new'
  });
});

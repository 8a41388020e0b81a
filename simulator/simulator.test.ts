// The routing simulator on W0 (4 machines × 2 slots, 50 LoRAs, a 2 GiB cache that forces evictions, 10 minutes), for
// every policy: engine invariants checked after every event, plus the test's own tallies through the hooks.
import { describe, expect, it } from 'vitest';
import { policyNames } from '../functions/core/scheduler/index.js';
import { InvariantError, simulate, type EngineHooks } from './engine.js';
import { EventKind, EventQueue } from './events.js';
import { bestPossible, compulsoryBytes, summarize } from './metrics.js';
import { latencyFloorRun, runPolicies } from './run.js';
import { WORKLOADS, generateWorkload, validateSpec, type GeneratedWorkload } from './workloads.js';

const SEED = 7;

interface Tally {
  starts: Map<string, number>;
  assigned: Map<string, number>;
  running: Map<string, number>;
  maxRunning: number;
  maxBusy: number;
  maxUsedOverBudget: number;
  startedWithout: string[];
  lostWhileRunning: string[];
  events: number;
}

function tallyHooks(): { tally: Tally; hooks: EngineHooks } {
  const tally: Tally = {
    starts: new Map(),
    assigned: new Map(),
    running: new Map(),
    maxRunning: 0,
    maxBusy: 0,
    maxUsedOverBudget: -Infinity,
    startedWithout: [],
    lostWhileRunning: [],
    events: 0,
  };
  const hooks: EngineHooks = {
    onAssign(jobId) {
      tally.assigned.set(jobId, (tally.assigned.get(jobId) ?? 0) + 1);
    },
    onStart(job, machine) {
      tally.starts.set(job.id, (tally.starts.get(job.id) ?? 0) + 1);
      for (const l of job.loras) if (!machine.has(l.key)) tally.startedWithout.push(`${job.id}:${l.key}`);
      const n = (tally.running.get(machine.id) ?? 0) + 1;
      tally.running.set(machine.id, n);
      tally.maxRunning = Math.max(tally.maxRunning, n - machine.slots);
    },
    onEnd(job, machine) {
      // Its LoRAs were in use the whole run: never evicted.
      for (const l of job.loras) if (!machine.has(l.key)) tally.lostWhileRunning.push(`${job.id}:${l.key}`);
      tally.running.set(machine.id, (tally.running.get(machine.id) ?? 0) - 1);
    },
    afterEvent(_t, machines) {
      tally.events++;
      for (const m of machines) {
        tally.maxBusy = Math.max(tally.maxBusy, m.busySlots - m.slots);
        tally.maxRunning = Math.max(tally.maxRunning, m.runningJobs - m.slots);
        tally.maxUsedOverBudget = Math.max(tally.maxUsedOverBudget, m.usedBytes - m.budgetBytes);
      }
    },
  };
  return { tally, hooks };
}

describe('routing simulator on W0', () => {
  const workload: GeneratedWorkload = generateWorkload(WORKLOADS.W0, SEED);

  it('generates a small, valid workload', () => {
    expect(workload.jobs.length).toBeGreaterThan(100);
    expect(workload.jobs.length).toBeLessThan(400);
    for (const job of workload.jobs) {
      expect(job.loras.length).toBeGreaterThanOrEqual(1);
      expect(job.loras.length).toBeLessThanOrEqual(3);
      expect(new Set(job.loras).size).toBe(job.loras.length);
    }
    for (const l of workload.loras) {
      expect(l.sizeBytes).toBeGreaterThanOrEqual(WORKLOADS.W0.sizeMinBytes);
      expect(l.sizeBytes).toBeLessThanOrEqual(WORKLOADS.W0.sizeMaxBytes);
    }
    // The whole catalogue is bigger than one machine's cache: evictions must happen.
    expect(workload.catalogueBytes).toBeGreaterThan(WORKLOADS.W0.cacheBudgetBytes);
  });

  for (const policy of policyNames) {
    it(`${policy}: every job starts once, within slots and budget, with its LoRAs present`, () => {
      const { tally, hooks } = tallyHooks();
      const record = simulate(workload, { policy, checkInvariants: true, hooks });
      const metrics = summarize(workload, record);

      expect(tally.events).toBeGreaterThan(workload.jobs.length);
      expect(tally.starts.size).toBe(workload.jobs.length);
      for (const job of workload.jobs) {
        expect(tally.starts.get(job.id), job.id).toBe(1);
        expect(tally.assigned.get(job.id), job.id).toBe(1);
      }
      expect(metrics.jobsStarted).toBe(workload.jobs.length);
      expect(tally.maxBusy).toBeLessThanOrEqual(0);
      expect(tally.maxRunning).toBeLessThanOrEqual(0);
      expect(tally.maxUsedOverBudget).toBeLessThanOrEqual(0);
      expect(tally.startedWithout).toEqual([]);
      expect(tally.lostWhileRunning).toEqual([]);

      expect(metrics.bytesDownloaded).toBeGreaterThanOrEqual(metrics.compulsoryBytes);
      expect(metrics.compulsoryBytes).toBe(compulsoryBytes(workload));
      expect(metrics.loraHits + metrics.loraJoined + metrics.loraMisses).toBe(metrics.loraRequests);
      expect(metrics.downloads).toBe(metrics.loraMisses);
      expect(metrics.evictions).toBeGreaterThan(0);
      expect(metrics.peakCacheBytes).toBeLessThanOrEqual(metrics.cacheBudgetBytes);
      expect(metrics.hitRateLora).toBeGreaterThan(0);
      expect(metrics.hitRateLora).toBeLessThan(1);
      for (const q of [metrics.startLatency, metrics.queueWait, metrics.downloadWait]) {
        expect(q.p50).toBeGreaterThanOrEqual(0);
        expect(q.p50).toBeLessThanOrEqual(q.p95);
        expect(q.p95).toBeLessThanOrEqual(q.p99);
      }
    });
  }

  it('gives identical metrics for the same seed, and different ones for another seed', () => {
    const runs = policyNames.map((p) => ({ label: p, policy: p }));
    const a = runPolicies(generateWorkload(WORKLOADS.W0, SEED), runs).metrics;
    const b = runPolicies(generateWorkload(WORKLOADS.W0, SEED), runs).metrics;
    expect(JSON.stringify(b)).toBe(JSON.stringify(a));
    const c = runPolicies(generateWorkload(WORKLOADS.W0, SEED + 1), runs).metrics;
    expect(JSON.stringify(c)).not.toBe(JSON.stringify(a));
  });

  it('also holds its invariants with live caches (no heartbeat lag), one slot and the W2 popularity shift', () => {
    const spec = { ...WORKLOADS.W0, heartbeatMs: 0, slotsPerMachine: 1, shiftAt: 0.5 };
    const w = generateWorkload(spec, SEED);
    for (const policy of policyNames) {
      const { tally, hooks } = tallyHooks();
      simulate(w, { policy, checkInvariants: true, hooks });
      expect(tally.starts.size).toBe(w.jobs.length);
      expect([...tally.starts.values()].every((n) => n === 1)).toBe(true);
      expect(tally.maxRunning).toBeLessThanOrEqual(0);
      expect(tally.maxUsedOverBudget).toBeLessThanOrEqual(0);
      expect(tally.startedWithout).toEqual([]);
    }
  });

  it('with a queue depth: slots + depth jobs held, never more than slots running, queued jobs downloading meanwhile', () => {
    const spec = { ...WORKLOADS.W0, slotsPerMachine: 1, queueDepth: 1 };
    const w = generateWorkload(spec, SEED);
    for (const policy of policyNames) {
      const { tally, hooks } = tallyHooks();
      let overlapped = 0;
      const afterEvent = hooks.afterEvent!;
      hooks.afterEvent = (t, machines) => {
        afterEvent(t, machines);
        // A slot busy running while another job held by the machine waits (downloading or ready): the overlap.
        for (const m of machines) if (m.runningJobs === m.slots && m.busySlots > m.runningJobs) overlapped++;
      };
      simulate(w, { policy, checkInvariants: true, hooks });
      expect(tally.starts.size).toBe(w.jobs.length);
      expect([...tally.starts.values()].every((n) => n === 1)).toBe(true);
      expect(tally.maxRunning).toBeLessThanOrEqual(0); // never more jobs running than slots
      expect(tally.maxBusy).toBe(1); // the queue position was used, never more than one
      expect(overlapped).toBeGreaterThan(0);
      expect(tally.maxUsedOverBudget).toBeLessThanOrEqual(0);
      expect(tally.startedWithout).toEqual([]);
      expect(tally.lostWhileRunning).toEqual([]);
    }
  });

  it('no policy beats the best-possible row (compulsory misses, instant-download latency)', () => {
    const best = bestPossible(workload, latencyFloorRun(workload));
    expect(best.startLatency).not.toBeNull();
    expect(best.hitRateLora).toBeLessThan(1);
    for (const policy of policyNames) {
      const m = summarize(workload, simulate(workload, { policy }));
      expect(m.hitRateLora, policy).toBeLessThanOrEqual(best.hitRateLora);
      expect(m.hitRateJob, policy).toBeLessThanOrEqual(best.hitRateJob);
      expect(m.bytesRatio, policy).toBeGreaterThanOrEqual(best.bytesRatio);
      expect(m.startLatency.p50, policy).toBeGreaterThanOrEqual(best.startLatency!.p50);
      expect(m.startLatency.p95, policy).toBeGreaterThanOrEqual(best.startLatency!.p95);
    }
  });

  it('fails loudly when the agent cache cannot make room (the invariant checks are live)', () => {
    // Every LoRA pinned: once the 2 GiB budget is full, the real planner refuses to evict and the engine stops.
    const pinned = workload.loras.map((l) => l.key);
    expect(() => simulate(workload, { policy: 'affinity', pinned, checkInvariants: true })).toThrow(InvariantError);
    expect(() => simulate(workload, { policy: 'affinity', pinned })).toThrow(/cannot make room/);
  });

  it('passes weight overrides to the affinity policy', () => {
    const record = simulate(workload, { policy: 'affinity', weights: { hrw: 0, load: 1 } });
    expect(summarize(workload, record).weights).toMatchObject({ hrw: 0, load: 1, userHit: 10 });
  });

  it('rejects a workload whose cache cannot hold every slot’s LoRAs at once', () => {
    expect(() => validateSpec({ ...WORKLOADS.W0, cacheBudgetBytes: 1024 ** 3 })).toThrow(/cache budget/);
  });
});

describe('event queue', () => {
  it('orders by time, then kind, then insertion', () => {
    const q = new EventQueue();
    q.push(5, EventKind.Tick, 1);
    q.push(5, EventKind.JobEnd, 2);
    q.push(1, EventKind.Tick, 3);
    q.push(5, EventKind.JobEnd, 4);
    q.push(5, EventKind.DownloadDone, 5);
    const order: number[] = [];
    for (let e = q.pop(); e; e = q.pop()) order.push(e.a);
    expect(order).toEqual([3, 5, 2, 4, 1]);
  });
});

// The demo's --breakdown arithmetic: hops add up to submit→start (the run's start, started_at) through submit→claim
// (claimed_at), and a job that waited for the run ahead on its
// machine has its placement split into that run executing, its report, and the report → placement.
import { describe, expect, it } from 'vitest';
import type { JobView } from '../contract/index.js';
import { breakdownLines, jobHops } from './demo-breakdown.js';

const T0 = Date.parse('2026-11-30T12:00:00.000Z');
const iso = (ms: number) => new Date(T0 + ms).toISOString();

function job(id: string, created: number, assigned: number, claimed: number, started: number, missing = 0): JobView {
  return {
    job_id: id,
    epoch: 1,
    attempt: 1,
    machine_id: 'gpu-1',
    created_at: iso(created),
    assigned_at: iso(assigned),
    claimed_at: iso(claimed),
    started_at: iso(started),
    cache: { hit_loras: [], missing_loras: Array.from({ length: missing }, (_, i) => `l${i}`) },
  } as unknown as JobView;
}
const ev = (jobId: string, msg: string, at: number) => ({ machine: 'gpu-1', jobId, epoch: 1, msg, atMs: T0 + at });

describe('demo --breakdown', () => {
  it('splits a wait behind the run ahead and accounts for every hop', () => {
    const ahead = job('job-a', 0, 10, 100, 150);
    const waiting = job('job-b', 500, 2_300, 2_500, 2_950, 1);
    const events = [
      ev('job-a', 'dispatch received', 50),
      ev('job-a', 'claimed', 100),
      ev('job-a', 'executor finished', 2_000),
      ev('job-a', 'outcome reported', 2_400), // answered after the API already placed job-b (placement on the outcome)
      ev('job-b', 'dispatch received', 2_420),
      ev('job-b', 'claimed', 2_510),
      ev('job-b', 'LoRAs ready', 2_900),
    ];
    const hops = jobHops([ahead, waiting], events);
    const b = hops.find((h) => h.jobId === 'job-b')!;
    expect(b).toMatchObject({ totalMs: 2_450, toClaimMs: 2_000, placeMs: 1_800, aheadExecutingMs: 1_500, aheadReportingMs: 300, aheadReportToPlacedMs: 0 });
    expect(b).toMatchObject({ dispatchToReceivedMs: 120, claimMs: 80, claimToStartMs: 450, lorasMs: 390, missing: 1 });
    expect(b.placeMs + b.dispatchToReceivedMs! + b.claimMs!).toBe(b.toClaimMs);
    expect(b.toClaimMs! + b.claimToStartMs!).toBe(b.totalMs);
    expect(b.aheadExecutingMs! + b.aheadReportingMs! + b.aheadReportToPlacedMs!).toBe(b.placeMs);
    // The run ahead was submitted on an idle machine: no wait to split.
    expect(hops.find((h) => h.jobId === 'job-a')!.aheadExecutingMs).toBeUndefined();
    expect(breakdownLines(hops)[0]).toMatch(/slowest 1 of 2 started jobs/);
  });

  it('a record older than claimed_at breaks down without the claim hops', () => {
    const old = { ...job('job-old', 0, 10, 100, 100), claimed_at: undefined } as unknown as JobView;
    const [h] = jobHops([old], [ev('job-old', 'dispatch received', 50)]);
    expect(h).toMatchObject({ totalMs: 100, placeMs: 10, dispatchToReceivedMs: 40 });
    expect(h!.toClaimMs).toBeUndefined();
    expect(h!.claimMs).toBeUndefined();
  });
});

// Workloads with several services (issue 14, item 3: run time learned per service_required) and what the engine tells
// the scheduler about each busy job's run time (`--run-time service|fleet`).
import { describe, expect, it } from 'vitest';
import { simulate } from './engine.js';
import { WORKLOADS, generateWorkload, type WorkloadSpec } from './workloads.js';

const short = (spec: WorkloadSpec, extra: Partial<WorkloadSpec> = {}): WorkloadSpec => ({ ...spec, hours: 0.25, ...extra });

describe('services in the simulator', () => {
  it('S1 draws each job a service by share, with that service’s run-time law', () => {
    const w = generateWorkload(WORKLOADS.S1, 1);
    const image = w.jobs.filter((j) => j.service === 'image');
    const video = w.jobs.filter((j) => j.service === 'video');
    expect(image.length + video.length).toBe(w.jobs.length);
    expect(video.length / w.jobs.length).toBeGreaterThan(0.17);
    expect(video.length / w.jobs.length).toBeLessThan(0.23);
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    expect(median(image.map((j) => j.runMs))).toBeGreaterThan(8_000);
    expect(median(image.map((j) => j.runMs))).toBeLessThan(12_000);
    expect(median(video.map((j) => j.runMs))).toBeGreaterThan(70_000);
    expect(w.serviceRunSeconds.video! / w.serviceRunSeconds.image!).toBeCloseTo(9, 9);
    expect(w.meanRunSeconds).toBeCloseTo(0.8 * w.serviceRunSeconds.image! + 0.2 * w.serviceRunSeconds.video!, 9);
  });

  it('one-service workloads are unchanged: every job is "default" and the service mean is the fleet mean', () => {
    const w = generateWorkload(WORKLOADS.W0, 7);
    expect(new Set(w.jobs.map((j) => j.service))).toEqual(new Set(['default']));
    expect(w.serviceRunSeconds.default).toBe(w.meanRunSeconds);
  });

  it('the engine gives the scheduler each busy job’s run time; per service and fleet-wide both keep the invariants', () => {
    const runs = (['service', 'fleet'] as const).map((runTimeEstimate) =>
      simulate(generateWorkload(short(WORKLOADS.S1, { runTimeEstimate }), 1), { policy: 'affinity', checkInvariants: true }),
    );
    for (const r of runs) expect(r.starts.every((n) => n === 1)).toBe(true);
    // The estimate changes decisions (the delay rule's holds): the two runs place some job differently.
    expect(runs[0]!.machineOf).not.toEqual(runs[1]!.machineOf);
  });
});

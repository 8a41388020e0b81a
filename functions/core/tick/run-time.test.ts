import { describe, expect, it } from 'vitest';
import { DEFAULT_EXPECTED_JOB_SECONDS } from '../scheduler/index.js';
import { expectedRunSeconds, meanRunTimes, RUN_TIME_MIN_SAMPLES } from './run-time.js';

// Records older than claimed_at: started_at is the claim time.
const row = (service: string, seconds: number) => ({
  service_required: service,
  started_at: new Date(1_000_000).toISOString(),
  finished_at: new Date(1_000_000 + seconds * 1000).toISOString(),
});

describe('learned run times', () => {
  it('means per service with enough samples, else the fleet mean, else the constant', () => {
    const rows = [
      ...Array.from({ length: RUN_TIME_MIN_SAMPLES }, () => row('image', 10)),
      ...Array.from({ length: RUN_TIME_MIN_SAMPLES }, () => row('video', 90)),
      row('rare', 500),
      { service_required: 'image', started_at: null, finished_at: null },
    ];
    const t = meanRunTimes(rows);
    expect(expectedRunSeconds(t, 'image')).toBe(10);
    expect(expectedRunSeconds(t, 'video')).toBe(90);
    const fleet = (5 * 10 + 5 * 90 + 500) / 11;
    expect(t.fleetSeconds).toBeCloseTo(fleet, 9);
    expect(expectedRunSeconds(t, 'rare')).toBeCloseTo(fleet, 9); // one sample: the fleet's mean
    expect(expectedRunSeconds(t, undefined)).toBeCloseTo(fleet, 9);
    expect(meanRunTimes([row('image', 10)]).fleetSeconds).toBe(DEFAULT_EXPECTED_JOB_SECONDS);
  });

  it('learns claim → finish (the slot held, LoRA fetch included), from started_at on records older than claimed_at', () => {
    const claimed = 1_000_000;
    const fetchedLoras = (seconds: number) => ({
      service_required: 'image',
      claimed_at: new Date(claimed).toISOString(),
      started_at: new Date(claimed + 20_000).toISOString(),
      finished_at: new Date(claimed + seconds * 1000).toISOString(),
    });
    const rows = [...Array.from({ length: RUN_TIME_MIN_SAMPLES - 1 }, () => fetchedLoras(30)), row('image', 30)];
    expect(expectedRunSeconds(meanRunTimes(rows), 'image')).toBe(30);
  });
});

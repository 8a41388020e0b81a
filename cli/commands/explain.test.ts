import { describe, expect, it } from 'vitest';
import type { JobView } from '../../contract/jobs.js';
import { explainJob, round2 } from './jobs.js';

const base: JobView = {
  job_id: 'job_x', status: 'assigned', service_required: 's', pool: 'standard', priority: 5, requirements: { loras: [] },
  machine_id: 'gpu-1', attempt: 1, epoch: 2, affinity_score: 3.14159265, score_breakdown: { affinity: 2.999999, load: -0.25, hrw: 0.3916 },
  policy: 'affinity', cache: { hit_loras: ['lora_a'], missing_loras: ['b.safetensors'] }, error: null, result: null,
  created_at: '2026-01-01T00:00:00Z', assigned_at: null, started_at: null, finished_at: null, not_before: null,
};

describe('job --explain', () => {
  it('names the machine, the policy and the score parts, rounded, largest first', () => {
    const lines = explainJob(base, 0);
    expect(lines[1]).toBe('placed on gpu-1 by affinity with score 3.14');
    expect(lines[2]).toBe('  score parts: affinity 3.00, hrw 0.39, load -0.25');
    expect(lines[3]).toMatch(/already there: lora_a; fetched: b\.safetensors/);
    expect(round2(0.005)).toBe('0.01');
  });

  it('says why a pending job waits: backoff, or no free healthy machine', () => {
    const backoff = explainJob({ ...base, status: 'pending', machine_id: null, not_before: '2026-01-01T00:00:10Z', error: 'handed back by gpu-1 (attempt 1 not spent): x' }, Date.parse('2026-01-01T00:00:00Z'));
    expect(backoff).toContain('waiting: retry backoff for 10 s more');
    expect(backoff.at(-1)).toMatch(/last problem: handed back by gpu-1/);
    expect(explainJob({ ...base, status: 'pending', machine_id: null }, 0)[1]).toMatch(/waiting: for a free slot/);
  });
});

import { describe, expect, it } from 'vitest';
import type { JobView } from '../../contract/jobs.js';
import type { MachineDetail } from '../../contract/machines.js';
import { explainJob, round2 } from './jobs.js';
import { ago, describeMachine } from './machines.js';

const base: JobView = {
  job_id: 'job_x', status: 'assigned', service_required: 's', pool: 'standard', priority: 5, requirements: { loras: [] },
  machine_id: 'gpu-1', attempt: 1, epoch: 2, affinity_score: 3.14159265, score_breakdown: { affinity: 2.999999, load: -0.25, hrw: 0.3916 },
  policy: 'affinity', runners_up: [], overflow: null, waits: [], cache: { hit_loras: ['lora_a'], missing_loras: ['b.safetensors'] }, error: null, result: null,
  outputs: [], outputs_expire_at: null,
  created_at: '2026-01-01T00:00:00Z', assigned_at: null, claimed_at: null, started_at: null, finished_at: null, not_before: null,
};

describe('job --explain', () => {
  it('names the machine, the policy and the score parts, rounded, largest first', () => {
    const lines = explainJob(base, 0);
    expect(lines[1]).toBe('placed on gpu-1 by affinity with score 3.14');
    expect(lines[2]).toBe('  score parts: affinity 3.00, hrw 0.39, load -0.25');
    expect(lines[3]).toMatch(/already there: lora_a; fetched: b\.safetensors/);
    expect(round2(0.005)).toBe('0.01');
  });

  it('says where an overflowed job ran instead of its pool, and why', () => {
    const lines = explainJob({ ...base, pool: 'gpu-a', overflow: { from_pool: 'gpu-a', to_pool: 'gpu-b', from_wait_seconds: 42, to_wait_seconds: 0, threshold_seconds: 30 } }, 0);
    expect(lines[0]).toMatch(/pool gpu-a/);
    expect(lines[2]).toBe("  overflowed from pool gpu-a to gpu-b: gpu-a's expected wait 42 s > threshold 30 s (gpu-b's expected wait 0 s)");
    const noMachine = explainJob({ ...base, overflow: { from_pool: 'gpu-a', to_pool: 'gpu-b', from_wait_seconds: null, to_wait_seconds: 12, threshold_seconds: 30 } }, 0);
    expect(noMachine[2]).toBe("  overflowed from pool gpu-a to gpu-b: no machine of gpu-a could take it (gpu-b's expected wait 12 s)");
    expect(explainJob(base, 0).join('\n')).not.toMatch(/overflowed/);
  });

  it('lists the runners-up with their score parts, and how long the job queued', () => {
    const lines = explainJob(
      {
        ...base,
        assigned_at: '2026-01-01T00:00:42Z',
        runners_up: [
          { machine_id: 'gpu-2', score: 1.5049, score_breakdown: { affinity: 2, download: -0.4951 } },
          { machine_id: 'gpu-3', score: -0.2, score_breakdown: { load: -0.2 } },
        ],
      },
      0,
    );
    expect(lines).toContain('  runners-up (among the machines the policy scored):');
    expect(lines).toContain('    gpu-2 score 1.50: affinity 2.00, download -0.50');
    expect(lines).toContain('    gpu-3 score -0.20: load -0.20');
    expect(lines).toContain('  queued 42 s before this assignment');
    expect(explainJob({ ...base, policy: 'fifo' }, 0).join('\n')).toMatch(/runners-up: none \(fifo/);
  });

  it('says why a pending job waits: backoff, or no free healthy machine', () => {
    const backoff = explainJob({ ...base, status: 'pending', machine_id: null, not_before: '2026-01-01T00:00:10Z', error: 'handed back by gpu-1 (attempt 1 not spent): x' }, Date.parse('2026-01-01T00:00:00Z'));
    expect(backoff).toContain('waiting: retry backoff for 10 s more');
    expect(backoff.at(-1)).toMatch(/last problem: handed back by gpu-1/);
    expect(explainJob({ ...base, status: 'pending', machine_id: null }, 0)[1]).toMatch(/waiting: for a free slot/);
  });

  it('shows the recorded wait reasons: the current one first, then the history', () => {
    const lines = explainJob(
      {
        ...base,
        status: 'pending',
        machine_id: null,
        waits: [
          { reason: 'no_machine_in_pool', since: '2026-01-01T00:00:01Z', machine_id: null },
          { reason: 'delayed', since: '2026-01-01T00:00:20Z', machine_id: 'gpu-7' },
        ],
      },
      Date.parse('2026-01-01T00:00:30Z'),
    );
    expect(lines[1]).toMatch(/^waiting: held back for gpu-7, which holds its LoRAs.*\(since 2026-01-01T00:00:20Z\)$/);
    expect(lines).toContain('waited (recorded when the reason changed; no record = for a free slot):');
    expect(lines.join('\n')).toMatch(/00:00:01Z no live, undrained, healthy machine in its pool/);
  });
});

describe('machines get', () => {
  const now = Date.parse('2026-01-01T12:00:00Z');
  const m: MachineDetail = {
    machine_id: 'gpu-1', pool: 'standard', slots: 2, live: true, draining: false, receiving: true, last_heartbeat_at: '2026-01-01T11:59:57Z',
    running_jobs: 1, cached_user_loras: 2, cached_shared_loras: 1,
    cache: { budget_bytes: 25 * 1024 * 1024, used_bytes: 1536, free_disk_bytes: 80 * 1024 ** 3, counters: { hits: 3, misses: 1, downloads: 1, bytes_downloaded: 1, evictions: 0, thrash: 0 } },
    registered_at: '2026-01-01T00:00:00Z', admin_drained: false, unhealthy_reason: null, agent_version: '0.1.0', registered_slots: 2, agent_slots: 2,
    cached: { user: ['lora_a', 'lora_b'], shared: ['style.safetensors'] },
    pinned: ['style.safetensors'],
    cache_entries: [
      { kind: 'user', key: 'lora_a', size_bytes: 151 * 1024 * 1024, last_used_at: '2026-01-01T11:55:00Z', pinned: false, in_use: 1 },
      { kind: 'shared', key: 'style.safetensors', size_bytes: 1536, last_used_at: '2025-12-29T12:00:00Z', pinned: true, in_use: 0 },
    ],
    jobs: [
      { job_id: 'job_r', status: 'running', epoch: 1, assigned_at: '2026-01-01T11:58:00Z', claimed_at: '2026-01-01T11:58:30Z', started_at: '2026-01-01T11:59:00Z' },
      { job_id: 'job_q', status: 'assigned', epoch: 1, assigned_at: '2026-01-01T11:59:50Z', claimed_at: null, started_at: null },
    ],
    pending_evict: [], pending_prewarm: [],
  };

  it('prints budget, free disk and each cached LoRA in sensible units with its last use', () => {
    const out = describeMachine(m, now).join('\n');
    expect(out).toMatch(/cache 1\.5 KiB used of 25 MiB budget, free disk 80 GiB/);
    expect(out).toMatch(/pinned: style\.safetensors/);
    expect(out).toMatch(/cached LoRAs \(the 2 most recently used of 3\):/);
    expect(out).toMatch(/user +lora_a +151 MiB +5 min ago +- +1/);
    expect(out).toMatch(/shared +style\.safetensors +1\.5 KiB +3 d ago +yes +-/);
    expect(out).toMatch(/running jobs: job_r \(claimed 90 s ago, started 60 s ago\)/);
    expect(out).toMatch(/assigned, not started: job_q \(assigned, 10 s ago\)/);
  });

  it('an older agent that reports no sizes: the keys, and why there are no sizes', () => {
    const out = describeMachine({ ...m, cache_entries: null }, now).join('\n');
    expect(out).toMatch(/cached LoRAs \(3; this agent version does not report sizes\)/);
    expect(out).toMatch(/user: lora_a, lora_b/);
  });

  it('ago() reads naturally', () => {
    expect(ago('2026-01-01T11:59:00Z', now)).toBe('60 s ago');
    expect(ago('2026-01-01T09:00:00Z', now)).toBe('3 h ago');
  });
});

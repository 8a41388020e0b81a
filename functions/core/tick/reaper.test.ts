import { describe, expect, it } from 'vitest';
import { newMachineDoc, type MachineDoc } from '../machines/model.js';
import { holderState, type SlotHolder } from '../machines/ledger.js';
import { reapDecision } from './reaper.js';

const NOW = Date.parse('2025-01-01T00:10:00.000Z');
const iso = (ms: number) => new Date(ms).toISOString();

function machine(over: Partial<MachineDoc> = {}): MachineDoc {
  const registered = newMachineDoc({ machine_id: 'gpu-1', pool: 'standard', slots: 2 }, iso(NOW - 3600_000));
  return { ...registered, updated_at: iso(NOW), last_heartbeat_at: iso(NOW - 2_000), ...over };
}

const job = (over: object = {}) => ({
  id: 'job_1',
  status: 'running' as const,
  machine_id: 'gpu-1',
  epoch: 2,
  assigned_at: iso(NOW - 60_000),
  started_at: iso(NOW - 55_000),
  ...over,
});

describe('reaper decisions', () => {
  it('a machine silent for more than the liveness window loses its jobs; at the limit it does not', () => {
    expect(reapDecision(job(), machine({ last_heartbeat_at: iso(NOW - 10_001) }), NOW, 10, 30)).toBe('machine_lost');
    expect(reapDecision(job(), machine({ last_heartbeat_at: iso(NOW - 10_000), running_jobs: [{ job_id: 'job_1', epoch: 2 }] }), NOW, 10, 30)).toBeNull();
    expect(reapDecision(job(), undefined, NOW, 10, 30)).toBe('machine_lost');
  });

  it('an assigned job is re-routed only after the claim timeout', () => {
    expect(reapDecision(job({ status: 'assigned', assigned_at: iso(NOW - 31_000) }), machine(), NOW, 10, 30)).toBe('claim_timeout');
    expect(reapDecision(job({ status: 'assigned', assigned_at: iso(NOW - 29_000) }), machine(), NOW, 10, 30)).toBeNull();
  });

  // These rows have no claimed_at, like records written before the field: started_at holds their claim time.
  it('a running job the live machine stopped listing is orphaned, but not right after the claim', () => {
    expect(reapDecision(job(), machine(), NOW, 10, 30)).toBe('orphaned');
    expect(reapDecision(job({ started_at: iso(NOW - 5_000) }), machine(), NOW, 10, 30)).toBeNull();
    expect(reapDecision(job(), machine({ running_jobs: [{ job_id: 'job_1', epoch: 2 }] }), NOW, 10, 30)).toBeNull();
    // Listed at an older epoch only: that is another attempt.
    expect(reapDecision(job(), machine({ running_jobs: [{ job_id: 'job_1', epoch: 1 }] }), NOW, 10, 30)).toBe('orphaned');
  });

  it('orphan time counts from the claim, not the run start (the agent lists the job while it fetches the LoRAs)', () => {
    // Claimed 55 s ago, started 5 s ago after a long download, and no longer listed: orphaned.
    expect(reapDecision(job({ claimed_at: iso(NOW - 55_000), started_at: iso(NOW - 5_000) }), machine(), NOW, 10, 30)).toBe('orphaned');
    // Claimed 5 s ago, the start not reported yet: too early to call it orphaned.
    expect(reapDecision(job({ claimed_at: iso(NOW - 5_000), started_at: null }), machine(), NOW, 10, 30)).toBeNull();
  });

  it('leaves pending and terminal jobs alone', () => {
    for (const status of ['pending', 'succeeded', 'failed', 'cancelled'] as const) {
      expect(reapDecision(job({ status }), undefined, NOW, 10, 30)).toBeNull();
    }
  });
});

describe('slot ledger holders', () => {
  const h: SlotHolder = { job_id: 'job_1', tenant_id: 't', epoch: 3, reserved_at_ms: NOW - 1_000 };
  it('alive while the job is assigned/running here at that epoch', () => {
    expect(holderState(h, 'gpu-1', { status: 'assigned', machine_id: 'gpu-1', epoch: 3 }, NOW)).toBe('alive');
    expect(holderState(h, 'gpu-1', { status: 'running', machine_id: 'gpu-1', epoch: 3 }, NOW)).toBe('alive');
  });
  it('in flight while the job is not written yet, within the grace period only', () => {
    expect(holderState(h, 'gpu-1', { status: 'pending', machine_id: null, epoch: 2 }, NOW)).toBe('in_flight');
    expect(holderState({ ...h, reserved_at_ms: NOW - 120_000 }, 'gpu-1', { status: 'pending', machine_id: null, epoch: 2 }, NOW)).toBe('dead');
  });
  it('dead once the job finished, moved on, or went to another machine', () => {
    expect(holderState(h, 'gpu-1', { status: 'succeeded', machine_id: 'gpu-1', epoch: 3 }, NOW)).toBe('dead');
    expect(holderState(h, 'gpu-1', { status: 'pending', machine_id: null, epoch: 4 }, NOW)).toBe('dead');
    expect(holderState(h, 'gpu-1', { status: 'assigned', machine_id: 'gpu-2', epoch: 3 }, NOW)).toBe('dead');
    expect(holderState(h, 'gpu-1', null, NOW)).toBe('dead');
  });
});

import { describe, expect, it } from 'vitest';
import {
  afterClaimTimeout,
  afterHandBack,
  afterLostAttempt,
  canonicalJson,
  claimedAt,
  slotHeldSinceMs,
  slotSeconds,
  startedTimes,
  unplaced,
  idempotentJobId,
  quotaThreshold,
  requestHash,
  lostMachineDelaySeconds,
  retryDelaySeconds,
  toJobView,
  type JobDoc,
} from './model.js';
import { jobIdSchema } from '../../../contract/ids.js';
import { jobViewSchema } from '../../../contract/jobs.js';

const NOW = Date.parse('2025-01-01T00:00:00.000Z');

function job(over: Partial<JobDoc> = {}): JobDoc {
  return {
    id: 'job_0000000000000000000000000a',
    tenant_id: 'alice',
    doc_type: 'job',
    status: 'running',
    service_required: 'svc',
    pool: 'standard',
    priority: 5,
    payload: {},
    requirements: { loras: [] },
    loras: [],
    request_hash: null,
    epoch: 3,
    attempt: 1,
    attempt_limit: 3,
    machine_id: 'gpu-1',
    avoid_machines: [],
    affinity_score: 10,
    score_breakdown: { affinity: 10 },
    policy: 'adr010',
    cache: { hit_loras: ['lora_x'], missing_loras: [] },
    cache_outcome: null,
    error: null,
    result: null,
    last_failure: null,
    assignments: 1,
    redispatches: 0,
    created_at: new Date(NOW - 60_000).toISOString(),
    updated_at: new Date(NOW - 60_000).toISOString(),
    assigned_at: new Date(NOW - 50_000).toISOString(),
    claimed_at: new Date(NOW - 45_000).toISOString(),
    started_at: new Date(NOW - 40_000).toISOString(),
    finished_at: null,
    not_before: null,
    ...over,
  };
}

describe('idempotent job ids', () => {
  it('are valid job ids, stable per (tenant, key), distinct across tenants and keys', () => {
    const a = idempotentJobId('alice', 'k1');
    expect(jobIdSchema.safeParse(a).success).toBe(true);
    expect(idempotentJobId('alice', 'k1')).toBe(a);
    expect(idempotentJobId('bob', 'k1')).not.toBe(a);
    expect(idempotentJobId('alice', 'k2')).not.toBe(a);
  });

  it('request hashes ignore key order but not values', () => {
    expect(canonicalJson({ b: 1, a: { d: [1, 2], c: null } })).toBe('{"a":{"c":null,"d":[1,2]},"b":1}');
    expect(requestHash({ a: 1, b: 2 })).toBe(requestHash({ b: 2, a: 1 }));
    expect(requestHash({ a: 1, b: 2 })).not.toBe(requestHash({ a: 1, b: 3 }));
  });
});

describe('quota threshold (90 % rule)', () => {
  it.each([
    [100, 90],
    [10, 9],
    [15, 14],
    [1, 1],
    [3, 3],
  ])('limit %i refuses from %i active jobs', (limit, threshold) => {
    expect(quotaThreshold(limit)).toBe(threshold);
  });
});

describe('lost attempts', () => {
  it('backoff doubles per attempt', () => {
    expect([1, 2, 3, 4].map((a) => retryDelaySeconds(2, a))).toEqual([2, 4, 8, 16]);
  });

  it('a lost machine re-routes at once the first time, then backs off 2 s, 4 s, ...', () => {
    expect([1, 2, 3, 4].map((a) => lostMachineDelaySeconds(2, a))).toEqual([0, 2, 4, 8]);
    const first = afterLostAttempt(job(), 'machine_lost', 'machine gpu-1 stopped heartbeating', NOW, 2);
    expect(first).toMatchObject({ status: 'pending', epoch: 4, attempt: 2, not_before: new Date(NOW).toISOString(), avoid_machines: ['gpu-1'] });
    const second = afterLostAttempt({ ...first, status: 'running', epoch: 5, machine_id: 'gpu-2' }, 'orphaned', 'x', NOW, 2);
    expect(second).toMatchObject({ attempt: 3, epoch: 6, not_before: new Date(NOW + 2000).toISOString() });
  });

  it('a failed attempt with budget left goes back to pending: epoch+1, attempt+1, backoff, machine avoided', () => {
    const next = afterLostAttempt(job(), 'agent_failure', 'cache full', NOW, 2);
    expect(next).toMatchObject({
      status: 'pending',
      epoch: 4,
      attempt: 2,
      machine_id: null,
      avoid_machines: ['gpu-1'],
      not_before: new Date(NOW + 2000).toISOString(),
      redispatches: 1,
      last_failure: { epoch: 3, kind: 'agent_failure', retryable: true },
    });
    const again = afterLostAttempt({ ...next, status: 'running', epoch: 5, machine_id: 'gpu-2' }, 'agent_failure', 'x', NOW, 2);
    expect(again).toMatchObject({ attempt: 3, epoch: 6, avoid_machines: ['gpu-1', 'gpu-2'], not_before: new Date(NOW + 4000).toISOString() });
  });

  it('the last attempt fails the job and keeps the epoch (a duplicate report of it is recognisable)', () => {
    const next = afterLostAttempt(job({ attempt: 3 }), 'machine_lost', 'machine gpu-1 stopped heartbeating', NOW, 2);
    expect(next.status).toBe('failed');
    expect(next.epoch).toBe(3);
    expect(next.error).toContain('attempt 3 of 3; no attempts left');
    expect(next.finished_at).toBe(new Date(NOW).toISOString());
  });

  it('a non-retryable failure fails at once', () => {
    const next = afterLostAttempt(job(), 'agent_failure', 'bad payload', NOW, 2, false);
    expect(next).toMatchObject({ status: 'failed', error: 'bad payload', attempt: 1 });
  });

  it('a claim timeout re-routes with the same attempt and no backoff', () => {
    const next = afterClaimTimeout(job({ status: 'assigned', started_at: null }), NOW);
    expect(next).toMatchObject({ status: 'pending', epoch: 4, attempt: 1, machine_id: null, not_before: null, avoid_machines: ['gpu-1'] });
  });

  it('a hand-back (the machine failed, not the job) spends no attempt, even on the last one, and avoids the machine', () => {
    const last = job({ attempt: 3, attempt_limit: 3 });
    const next = afterHandBack(last, 'cannot start /opt/run.sh: spawn ENOENT', NOW);
    expect(next).toMatchObject({ status: 'pending', epoch: last.epoch + 1, attempt: 3, machine_id: null, not_before: null, avoid_machines: ['gpu-1'] });
    expect(next.last_failure).toMatchObject({ epoch: last.epoch, kind: 'handed_back', retryable: true });
    expect(next.error).toMatch(/handed back by gpu-1 \(attempt 3 not spent\)/);
  });
});

describe('job view', () => {
  it('matches the contract schema and prefers the agent-reported cache outcome', () => {
    const view = toJobView(job({ cache_outcome: { hit_loras: [], missing_loras: ['lora_x'], download_ms: 5, bytes_downloaded: 10 } }));
    expect(jobViewSchema.safeParse(view).success).toBe(true);
    expect(view.cache).toEqual({ hit_loras: [], missing_loras: ['lora_x'] });
  });
});

describe('attempt times: claimed_at (the claim) and started_at (the run)', () => {
  const iso = (ms: number) => new Date(ms).toISOString();
  /** A record written before claimed_at existed: the claim time is in started_at and there is no claimed_at key. */
  function oldRecord(over: Partial<JobDoc> = {}): JobDoc {
    const { claimed_at: _c, ...rest } = job({ started_at: iso(NOW - 45_000), ...over });
    return rest;
  }

  it('the first `started` report sets started_at and keeps the claim; a resent one keeps the first start', () => {
    const claimed = job({ started_at: null });
    const first = startedTimes(claimed, iso(NOW));
    expect(first).toEqual({ claimed_at: iso(NOW - 45_000), started_at: iso(NOW) });
    expect(startedTimes({ ...claimed, ...first }, iso(NOW + 5_000))).toEqual(first);
  });

  it('a `started` report on a record claimed before the field moves the claim time to claimed_at', () => {
    expect(startedTimes(oldRecord(), iso(NOW))).toEqual({ claimed_at: iso(NOW - 45_000), started_at: iso(NOW) });
  });

  it.each([
    ['a retry after a failure', () => afterLostAttempt(job(), 'agent_failure', 'x', NOW, 2)],
    ['a lost machine', () => afterLostAttempt(job(), 'machine_lost', 'x', NOW, 2)],
    ['a hand-back', () => afterHandBack(job(), 'draining', NOW)],
    ['a claim timeout', () => afterClaimTimeout(job({ status: 'assigned' }), NOW)],
    ['a user retry (unplaced)', () => ({ ...job({ status: 'failed' }), status: 'pending' as const, ...unplaced() })],
  ])('%s clears assigned_at, claimed_at and started_at', (_, next) => {
    expect(next()).toMatchObject({ status: 'pending', assigned_at: null, claimed_at: null, started_at: null });
  });

  it('the view carries both; a record without claimed_at reads its claim time from started_at', () => {
    const fresh = toJobView(job());
    expect(jobViewSchema.parse(fresh)).toMatchObject({ claimed_at: iso(NOW - 45_000), started_at: iso(NOW - 40_000) });
    const claimedOnly = toJobView(job({ started_at: null }));
    expect(claimedOnly).toMatchObject({ claimed_at: iso(NOW - 45_000), started_at: null });
    const old = oldRecord();
    expect('claimed_at' in old).toBe(false);
    expect(jobViewSchema.parse(toJobView(old))).toMatchObject({ claimed_at: iso(NOW - 45_000), started_at: iso(NOW - 45_000) });
    expect(toJobView(oldRecord({ status: 'pending', started_at: null }))).toMatchObject({ claimed_at: null, started_at: null });
  });

  it('a busy slot is held since the claim (not the run start), else since the assignment', () => {
    expect(slotHeldSinceMs(job())).toBe(NOW - 45_000);
    expect(slotHeldSinceMs(oldRecord())).toBe(NOW - 45_000);
    expect(slotHeldSinceMs(job({ status: 'assigned', claimed_at: null, started_at: null }))).toBe(NOW - 50_000);
    expect(slotHeldSinceMs({ assigned_at: null, started_at: null })).toBeNaN();
  });

  it('slot time is claim → finish (the LoRA fetch holds the slot too), from started_at on an old record', () => {
    const finished_at = iso(NOW);
    expect(claimedAt({ claimed_at: iso(NOW - 45_000), started_at: iso(NOW - 40_000) })).toBe(iso(NOW - 45_000));
    expect(slotSeconds({ claimed_at: iso(NOW - 45_000), started_at: iso(NOW - 40_000), finished_at })).toBe(45);
    expect(slotSeconds({ started_at: iso(NOW - 30_000), finished_at })).toBe(30);
    expect(slotSeconds({ claimed_at: null, started_at: null, finished_at })).toBeNull();
    expect(slotSeconds({ claimed_at: iso(NOW + 1_000), started_at: null, finished_at })).toBeNull();
  });
});

// Intake under load (the small version of `npm run bench:intake`): every submission answered 201, 200 (a replayed
// Idempotency-Key) or a quota 429 with numbers; the jobs in Cosmos are exactly the 201s; racing retries of one key
// never create two jobs.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runIntakeLoad } from '../../testkit/intake-load.js';
import { startTestHost, type TestHost } from '../support/stack.js';

let t: TestHost;
beforeAll(async () => {
  // 30 per tenant against a limit of 30 (new work refused from 27): some 429s for every tenant.
  t = await startTestHost({ TENANT_MAX_ACTIVE_JOBS: '30' }, { timers: false });
});
afterAll(async () => {
  await t?.stop();
});

describe('intake under load', () => {
  it('answers 300 submissions from 10 tenants at concurrency 20, loses none and duplicates none', async () => {
    const r = await runIntakeLoad({ apiUrl: t.apiUrl, devSecret: t.settings.AUTH_DEV_SECRET!, jobs: t.clients.cosmosContainers.jobs, submissions: 300, tenants: 10, concurrency: 20, retriedShare: 0.1 });
    expect(r.networkErrors).toBe(0);
    expect(r.otherStatuses).toEqual({});
    expect(r.created201 + r.replayed200 + r.quota429).toBe(r.requests);
    expect(r.quota429).toBeGreaterThan(0);
    expect(r.quota429WithNumbers).toBe(r.quota429);
    expect(r.duplicateKeys).toBe(0);
    expect(r.distinctCreated).toBe(r.created201);
    expect(r.jobsInCosmos).toBe(r.created201);
  }, 300_000);
});

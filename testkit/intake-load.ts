// Job intake under load against a running local stack: N submissions spread over T tenants at concurrency C, a share
// of them sent twice at once with the same Idempotency-Key (a client retry racing its first attempt). Afterwards the
// jobs in Cosmos are counted per tenant and compared with the 201s. Used by bench/intake-load.ts and by a smaller
// integration test.
import { randomBytes } from 'node:crypto';
import type { Container } from '@azure/cosmos';
import { issueDevToken } from '../functions/core/auth.js';

export interface IntakeLoadOptions {
  apiUrl: string;
  devSecret: string;
  jobs: Container;
  submissions: number;
  tenants: number;
  concurrency: number;
  /** Share of submissions sent as two concurrent requests with the same Idempotency-Key. */
  retriedShare: number;
  /** Called after every 1000 submissions, with the answers so far (latency percentiles over them). */
  onProgress?: (done: number, sofar: IntakeLoadReport) => void;
}

export interface IntakeLoadReport {
  submissions: number;
  requests: number;
  created201: number;
  replayed200: number;
  quota429: number;
  quota429WithNumbers: number;
  otherStatuses: Record<string, number>;
  /** The first few unexpected answers (status and body), to say what they were. */
  otherSamples: string[];
  /** 503 + Retry-After answers (a backing service timed out) that were retried with the same Idempotency-Key. */
  retried503: number;
  networkErrors: number;
  /** Keys whose two racing requests named different jobs (must be 0). */
  duplicateKeys: number;
  /** Jobs in Cosmos for the run's tenants, and the distinct job ids answered 201 (must be equal). */
  jobsInCosmos: number;
  distinctCreated: number;
  p50Ms: number;
  p95Ms: number;
  maxMs: number;
  seconds: number;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

export async function runIntakeLoad(o: IntakeLoadOptions): Promise<IntakeLoadReport> {
  const run = randomBytes(3).toString('hex');
  const tenants = Array.from({ length: o.tenants }, (_, i) => `load-${run}-${i}`);
  const tokens = await Promise.all(tenants.map((t) => issueDevToken(o.devSecret, t, 'user')));
  const r: IntakeLoadReport = {
    submissions: o.submissions, requests: 0, created201: 0, replayed200: 0, quota429: 0, quota429WithNumbers: 0, otherStatuses: {},
    otherSamples: [], retried503: 0, networkErrors: 0, duplicateKeys: 0, jobsInCosmos: 0, distinctCreated: 0, p50Ms: 0, p95Ms: 0, maxMs: 0, seconds: 0,
  };
  const latencies: number[] = [];
  const created = new Set<string>();

  // Intake refuses a pool no machine was ever registered in (422 unknown_pool): register one (timers are off in the
  // bench and the test, so nothing is placed on it and jobs stay pending for the quota to bite).
  const adminToken = await issueDevToken(o.devSecret, `load-admin-${run}`, 'admin');
  const reg = await fetch(`${o.apiUrl}/machines`, {
    method: 'POST',
    headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
    body: JSON.stringify({ machine_id: `load-${run}`, pool: 'load', slots: 1 }),
  });
  if (!reg.ok) throw new Error(`registering a machine in pool load: HTTP ${reg.status} ${await reg.text()}`);

  async function send(tenant: number, key: string): Promise<string | null> {
    const t0 = performance.now();
    r.requests++;
    try {
      let res: Response;
      // A well-behaved client retries a 503 after its Retry-After with the same Idempotency-Key (safe by design).
      for (let attempt = 1; ; attempt++) {
        res = await fetch(`${o.apiUrl}/jobs`, {
          method: 'POST',
          headers: { authorization: `Bearer ${tokens[tenant]}`, 'content-type': 'application/json', 'idempotency-key': key },
          body: JSON.stringify({ service_required: 'comfyui', pool: 'load', payload: { key } }),
        });
        const retryAfter = Number(res.headers.get('retry-after'));
        if (res.status !== 503 || !(retryAfter > 0) || attempt >= 5) break;
        r.retried503++;
        await res.arrayBuffer();
        await new Promise((done) => setTimeout(done, retryAfter * 1000));
      }
      const text = await res.text();
      const body = JSON.parse(text) as { job_id?: string; error?: { details?: { active?: number; limit?: number } } };
      latencies.push(performance.now() - t0);
      if (res.status === 201) {
        r.created201++;
        created.add(body.job_id!);
        return body.job_id!;
      }
      if (res.status === 200) {
        r.replayed200++;
        return body.job_id!;
      }
      if (res.status === 429) {
        r.quota429++;
        if (typeof body.error?.details?.active === 'number' && typeof body.error?.details?.limit === 'number') r.quota429WithNumbers++;
        return null;
      }
      r.otherStatuses[res.status] = (r.otherStatuses[res.status] ?? 0) + 1;
      if (r.otherSamples.length < 5) r.otherSamples.push(`${res.status} ${text.slice(0, 300)}`);
      return null;
    } catch {
      r.networkErrors++;
      return null;
    }
  }

  const started = performance.now();
  const snapshot = (): IntakeLoadReport => {
    const sorted = [...latencies].sort((a, b) => a - b);
    return { ...r, otherStatuses: { ...r.otherStatuses }, otherSamples: [...r.otherSamples], distinctCreated: created.size, p50Ms: Math.round(percentile(sorted, 50)), p95Ms: Math.round(percentile(sorted, 95)), maxMs: Math.round(sorted[sorted.length - 1] ?? 0), seconds: +((performance.now() - started) / 1000).toFixed(1) };
  };
  let next = 0;
  const retriedEvery = o.retriedShare > 0 ? Math.round(1 / o.retriedShare) : 0;
  await Promise.all(
    Array.from({ length: o.concurrency }, async () => {
      for (;;) {
        const i = next++;
        if (i >= o.submissions) return;
        if (i > 0 && i % 1000 === 0) o.onProgress?.(i, snapshot());
        const tenant = i % o.tenants;
        const key = `k-${run}-${i}`;
        if (retriedEvery && i % retriedEvery === 0) {
          const [x, y] = await Promise.all([send(tenant, key), send(tenant, key)]);
          if (x && y && x !== y) r.duplicateKeys++;
        } else {
          await send(tenant, key);
        }
      }
    }),
  );
  r.seconds = +((performance.now() - started) / 1000).toFixed(1);
  latencies.sort((a, b) => a - b);
  r.p50Ms = Math.round(percentile(latencies, 50));
  r.p95Ms = Math.round(percentile(latencies, 95));
  r.maxMs = Math.round(latencies[latencies.length - 1] ?? 0);
  r.distinctCreated = created.size;
  for (const tenant of tenants) {
    const { resources } = await o.jobs.items
      .query<number>({ query: 'SELECT VALUE COUNT(1) FROM c WHERE c.tenant_id = @t AND c.doc_type = "job"', parameters: [{ name: '@t', value: tenant }] })
      .fetchAll();
    r.jobsInCosmos += resources.reduce((a, b) => a + b, 0);
  }
  return r;
}

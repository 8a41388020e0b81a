// POST /api/jobs: validate the LoRAs a job needs, apply the tenant quota, store the job as pending. With an
// Idempotency-Key the job id is derived from (tenant, key), so a retried request finds the job it already created.
import { DEFAULT_POOL, newJobId } from '../../../contract/ids.js';
import type { LoraRequirement, SubmitJobRequest } from '../../../contract/jobs.js';
import { ApiError, badRequest, conflict, quotaExceeded } from '../errors.js';
import { SHARED_OWNER, sharedLoraDocId, type LoraDoc } from '../loras/records.js';
import { isConflict } from '../sdk-errors.js';
import type { CoreDeps } from '../deps.js';
import {
  ACTIVE_STATUSES,
  IDEMPOTENCY_KEY_PATTERN,
  idempotentJobId,
  quotaThreshold,
  requestHash,
  unplaced,
  type JobDoc,
  type JobLora,
} from './model.js';
import { readJob } from './store.js';
import { inSpan, SpanKind, traceparentOf } from '../telemetry.js';
import { readItem } from '../point-read.js';

export type SubmitOutcome = { created: true; doc: JobDoc } | { created: false; doc: JobDoc };

const readLora = (deps: CoreDeps, id: string, owner: string): Promise<LoraDoc | null> => readItem<LoraDoc>(deps.loras, id, owner);

const describe = (r: LoraRequirement): string => (r.type === 'user' ? `user LoRA ${r.flat_file_id}` : `shared LoRA ${r.filename}`);

/** Every required LoRA must exist, be `ready`, and be the caller's own or a shared one. */
export async function resolveLoras(deps: CoreDeps, tenantId: string, requirements: LoraRequirement[]): Promise<JobLora[]> {
  const seen = new Set<string>();
  for (const [i, r] of requirements.entries()) {
    const key = r.type === 'user' ? `u:${r.flat_file_id}` : `s:${r.filename}`;
    if (seen.has(key)) throw badRequest(`requirements.loras[${i}]: ${describe(r)} is listed twice`);
    seen.add(key);
  }
  const docs = await Promise.all(
    requirements.map((r) => (r.type === 'user' ? readLora(deps, r.flat_file_id, tenantId) : readLora(deps, sharedLoraDocId(r.filename), SHARED_OWNER))),
  );
  return requirements.map((r, i) => {
    const doc = docs[i];
    const where = `requirements.loras[${i}]`;
    if (!doc || doc.owner_id !== (r.type === 'user' ? tenantId : SHARED_OWNER)) {
      throw new ApiError('invalid_lora', `${where}: ${describe(r)} does not exist${r.type === 'user' ? ' in your library' : ''}`, {
        index: i,
        lora: r,
      });
    }
    if (doc.status === 'rejected') {
      throw new ApiError('invalid_lora', `${where}: ${describe(r)} was rejected (${doc.reject_reason ?? 'invalid file'})`, {
        index: i,
        lora: r,
        status: doc.status,
      });
    }
    if (doc.status !== 'ready') {
      throw new ApiError('lora_not_ready', `${where}: ${describe(r)} is ${doc.status}, not ready yet`, { index: i, lora: r, status: doc.status });
    }
    return { kind: r.type, key: r.type === 'user' ? r.flat_file_id : r.filename, size_bytes: doc.size_bytes };
  });
}

/** Jobs of the tenant that hold or wait for capacity: pending + assigned + running. */
export async function countActiveJobs(deps: CoreDeps, tenantId: string): Promise<number> {
  const { resources } = await deps.jobs.items
    .query<number>({
      query: `SELECT VALUE COUNT(1) FROM c WHERE c.tenant_id = @t AND c.doc_type = "job" AND c.status IN (${ACTIVE_STATUSES.map((s) => `"${s}"`).join(',')})`,
      parameters: [{ name: '@t', value: tenantId }],
    }, { partitionKey: tenantId }) // one partition (jobs are partitioned by tenant), not a fan-out over all of them
    .fetchAll();
  return resources.reduce((a, b) => a + b, 0);
}

/**
 * 429 once the tenant's active jobs reach 90 % of TENANT_MAX_ACTIVE_JOBS. Count-then-create is not atomic, so a
 * tenant's concurrent submits can pass the threshold by a few (bench:intake: 907 at a threshold of 900 for 10 tenants,
 * 5 concurrent each); the 10 % margin below the limit absorbs that without a per-tenant counter document to contend on.
 */
export async function enforceQuota(deps: CoreDeps, tenantId: string): Promise<void> {
  const limit = deps.config.tenantMaxActiveJobs;
  const threshold = quotaThreshold(limit);
  const active = await countActiveJobs(deps, tenantId);
  if (active >= threshold) {
    throw quotaExceeded(
      `tenant ${tenantId} has ${active} active jobs (pending+assigned+running); the limit is ${limit} and new work is refused from 90% of it (${threshold} jobs). Wait for jobs to finish or cancel some.`,
      { active, limit, threshold },
    );
  }
}

function sameRequest(doc: JobDoc, hash: string): boolean {
  return doc.request_hash === hash;
}

function replay(doc: JobDoc, hash: string, key: string): SubmitOutcome {
  if (!sameRequest(doc, hash)) {
    throw conflict(`Idempotency-Key "${key}" was already used for a different request (job ${doc.id}); use a new key for a new job`, {
      job_id: doc.id,
    });
  }
  return { created: false, doc };
}

/** Pools seen with a registered machine, per instance: a pool once known is accepted without a query for this long. */
export const KNOWN_POOLS_TTL_MS = 30_000;
const knownPools = new WeakMap<object, { atMs: number; pools: Set<string> }>();

/**
 * A job for a pool no machine has ever been registered in would wait forever: 422 listing the known pools. The
 * default pool is always accepted (a fresh system has no machines yet; its jobs wait for the first one). The answer
 * "known" is cached per instance (otherwise every submission paid a fan-out query over all machines:
 * test/integration/intake-cost.test.ts); "unknown" is always checked afresh, so a pool whose first machine has just registered is accepted at
 * once. A pool whose last machine went within the cache's life is accepted: its jobs wait, as they would had it died.
 */
export async function requireKnownPool(deps: CoreDeps, pool: string): Promise<void> {
  if (pool === DEFAULT_POOL) return;
  const hit = knownPools.get(deps.machines);
  if (hit && deps.now() - hit.atMs < KNOWN_POOLS_TTL_MS && hit.pools.has(pool)) return;
  const atMs = deps.now();
  const { resources } = await deps.machines.items.query<{ pool: string }>('SELECT c.pool FROM c WHERE c.doc_type = "machine"').fetchAll();
  const pools = new Set(resources.map((r) => r.pool));
  knownPools.set(deps.machines, { atMs, pools });
  if (!pools.has(pool)) {
    const known = [...new Set([DEFAULT_POOL, ...pools])].sort();
    throw new ApiError('unknown_pool', `no machine has been registered in pool ${pool}; known pools: ${known.join(', ')}`, { known_pools: known });
  }
}

export async function submitJob(deps: CoreDeps, tenantId: string, body: SubmitJobRequest, idempotencyKey?: string | null): Promise<SubmitOutcome> {
  let id = newJobId();
  let hash: string | null = null;
  if (idempotencyKey !== undefined && idempotencyKey !== null) {
    if (!IDEMPOTENCY_KEY_PATTERN.test(idempotencyKey)) {
      throw badRequest('Idempotency-Key must be 1-200 visible ASCII characters');
    }
    id = idempotentJobId(tenantId, idempotencyKey);
    hash = requestHash(body);
    const existing = await readJob(deps.jobs, tenantId, id);
    if (existing) return replay(existing, hash, idempotencyKey);
  }

  await requireKnownPool(deps, body.pool);
  const loras = await resolveLoras(deps, tenantId, body.requirements.loras);
  await enforceQuota(deps, tenantId);

  const doc = newJobDoc({ id, tenantId, body, loras, requestHash: hash, nowMs: deps.now(), maxAttempts: deps.config.maxAttempts });
  try {
    return await inSpan(
      'job.submit',
      { kind: SpanKind.SERVER, attributes: { 'lora_router.job.id': id, 'lora_router.tenant.id': tenantId, 'lora_router.job.pool': doc.pool, 'lora_router.job.loras': loras.length } },
      async (span) => {
        const traced: JobDoc = { ...doc, trace_parent: traceparentOf(span) ?? null };
        const { resource } = await deps.jobs.items.create<JobDoc>(traced);
        return { created: true, doc: resource ?? traced };
      },
    );
  } catch (err) {
    if (isConflict(err) && hash && idempotencyKey) {
      // The same key raced in concurrently: whoever created it first wins; the other sees that job.
      const existing = await readJob(deps.jobs, tenantId, id);
      if (existing) return replay(existing, hash, idempotencyKey);
    }
    throw err;
  }
}

/** A new pending job as intake stores it (validated request, resolved LoRAs). Pure. */
export function newJobDoc(p: {
  id: string;
  tenantId: string;
  body: SubmitJobRequest;
  loras: JobLora[];
  requestHash: string | null;
  nowMs: number;
  maxAttempts: number;
}): JobDoc {
  const { id, tenantId, body, loras } = p;
  const now = new Date(p.nowMs).toISOString();
  return {
    id,
    tenant_id: tenantId,
    doc_type: 'job',
    status: 'pending',
    service_required: body.service_required,
    pool: body.pool,
    priority: body.priority,
    payload: body.payload,
    requirements: body.requirements,
    loras,
    request_hash: p.requestHash,
    epoch: 0,
    attempt: 1,
    attempt_limit: p.maxAttempts,
    ...unplaced(),
    last_failure: null,
    assignments: 0,
    redispatches: 0,
    created_at: now,
    updated_at: now,
  };
}

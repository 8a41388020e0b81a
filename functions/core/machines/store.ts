// Machine registration, machine-token checks and heartbeats. All writes are CAS on the machine document's ETag.
import type { Container } from '@azure/cosmos';
import type { HeartbeatResponse, Heartbeat, RegisterMachineRequest } from '../../../contract/machines.js';
import { issueMachineToken, type IssuedMachineToken, type Principal } from '../auth.js';
import { ApiError, conflict, forbidden, unauthorized } from '../errors.js';
import { isConflict, isPreconditionFailed } from '../sdk-errors.js';
import type { CoreDeps } from '../deps.js';
import { ensureLedger } from './ledger.js';
import { newMachineDoc, type MachineDoc, type PrewarmOrder } from './model.js';
import { addMachineDelta, addToRollups, FLEET_SCOPE } from '../metrics/rollups.js';
import { emptyCounters, REPORTED_CACHE_ENTRIES, type CacheCounters } from '../../../contract/machines.js';
import { readItem } from '../point-read.js';

/** How long a pre-warm download URL stays valid. */
const PREWARM_SAS_MINUTES = 30;

async function prewarmUrls(deps: CoreDeps, orders: PrewarmOrder[]): Promise<NonNullable<HeartbeatResponse['prewarm']>> {
  const expires = new Date(deps.now() + PREWARM_SAS_MINUTES * 60_000);
  return Promise.all(
    orders.map(async (o) => ({
      kind: o.kind,
      key: o.key,
      size_bytes: o.size_bytes,
      sha256: o.sha256,
      download_url: await deps.blobSas.url(o.container, o.blob_name, 'read', expires),
      ...(o.hint ? { hint: true } : {}),
    })),
  );
}

export async function readMachine(machines: Container, machineId: string): Promise<MachineDoc | null> {
  const resource = await readItem<MachineDoc>(machines, machineId, machineId);
  return resource && resource.doc_type === 'machine' ? resource : null;
}

export async function listMachineDocs(machines: Container): Promise<MachineDoc[]> {
  const { resources } = await machines.items.query<MachineDoc>('SELECT * FROM c WHERE c.doc_type = "machine"').fetchAll();
  return resources;
}

export interface Registration {
  doc: MachineDoc;
  created: boolean;
  token: IssuedMachineToken;
}

/** Registers a machine, or re-registers it: the token version moves on, which revokes every earlier token. */
export async function registerMachine(deps: CoreDeps, req: RegisterMachineRequest): Promise<Registration> {
  for (let attempt = 0; attempt < 8; attempt++) {
    const at = new Date(deps.now()).toISOString();
    const existing = await readMachine(deps.machines, req.machine_id);
    let doc: MachineDoc | undefined;
    let created = false;
    try {
      if (!existing) {
        const fresh = newMachineDoc(req, at);
        doc = (await deps.machines.items.create<MachineDoc>(fresh)).resource;
        created = true;
      } else {
        const next: MachineDoc = {
          ...existing,
          pool: req.pool,
          registered_slots: req.slots,
          slots: req.slots,
          token_version: existing.token_version + 1,
          updated_at: at,
        };
        doc = (
          await deps.machines.item(existing.id, existing.machine_id).replace<MachineDoc>(next, {
            accessCondition: { type: 'IfMatch', condition: existing._etag! },
          })
        ).resource;
      }
    } catch (err) {
      if (isConflict(err) || isPreconditionFailed(err)) continue; // registered concurrently: decide again
      throw err;
    }
    if (!doc) continue;
    await deps.sender.ensureMachine(doc.machine_id);
    await ensureLedger(deps.machines, doc.machine_id, deps.now());
    const token = await issueMachineToken(deps.config.auth.machineTokenSecret, doc.machine_id, doc.token_version, deps.config.machineTokenTtlMinutes * 60, deps.now());
    return { doc, created, token };
  }
  throw conflict(`machine ${req.machine_id} is being registered concurrently; try again`);
}

/**
 * The caller must be the machine named in the path/body, with a token of the current version (re-registration
 * revokes older tokens). Returns the machine document.
 */
export async function authorizeMachine(deps: CoreDeps, principal: Principal, machineId: string): Promise<MachineDoc> {
  if (principal.role !== 'machine') throw forbidden('this endpoint needs a machine token');
  if (principal.subject !== machineId) {
    throw forbidden(`the token belongs to machine ${principal.subject}, not ${machineId}`);
  }
  const doc = await readMachine(deps.machines, machineId);
  if (!doc) throw unauthorized(`machine ${machineId} is not registered; register it and use the token it returns`);
  if (doc.token_version !== principal.tokenVersion) {
    throw unauthorized(
      `the machine token for ${machineId} was revoked (version ${principal.tokenVersion}, current ${doc.token_version}); use the token from the latest registration`,
    );
  }
  return doc;
}

interface JobStateRow {
  id: string;
  status: string;
  epoch: number;
  machine_id: string | null;
}

/**
 * Jobs the machine says it runs that it must stop: cancelled, failed (e.g. given up by the reaper), taken away (the
 * epoch moved on or another machine has it), or unknown.
 */
export async function jobsToStop(deps: CoreDeps, machineId: string, running: { job_id: string; epoch: number }[]): Promise<HeartbeatResponse['stop_jobs']> {
  if (running.length === 0) return [];
  const { resources } = await deps.jobs.items
    .query<JobStateRow>({
      query: 'SELECT c.id, c.status, c.epoch, c.machine_id FROM c WHERE c.doc_type = "job" AND ARRAY_CONTAINS(@ids, c.id)',
      parameters: [{ name: '@ids', value: [...new Set(running.map((r) => r.job_id))] }],
    })
    .fetchAll();
  const byId = new Map(resources.map((r) => [r.id, r]));
  return running.filter((r) => {
    const j = byId.get(r.job_id);
    if (!j) return true;
    if (j.epoch !== r.epoch || j.machine_id !== machineId) return true;
    // Same epoch, this machine: keep going while it is ours to run (or already reported done by this machine).
    return !(j.status === 'assigned' || j.status === 'running' || j.status === 'succeeded');
  });
}

/**
 * Self-rotation: once half the calling token's lifetime has passed, the heartbeat answer carries a fresh token of the
 * same version (re-registration still revokes every token at once). A token nobody refreshes dies at its expiry.
 */
async function refreshedToken(deps: CoreDeps, principal: Principal, doc: MachineDoc): Promise<Pick<HeartbeatResponse, 'machine_token'>> {
  const ttl = deps.config.machineTokenTtlMinutes * 60;
  const remaining = (principal.expiresAt ?? 0) - deps.now() / 1000;
  if (remaining > ttl / 2) return {};
  return { machine_token: await issueMachineToken(deps.config.auth.machineTokenSecret, doc.machine_id, doc.token_version, ttl, deps.now()) };
}

export async function recordHeartbeat(
  deps: CoreDeps,
  principal: Principal,
  machineId: string,
  hb: Heartbeat,
  /** Called once the beat is stored, with the document before and after (placement on events uses it). */
  onRecorded?: (before: MachineDoc, after: MachineDoc) => Promise<void>,
): Promise<HeartbeatResponse> {
  for (let attempt = 0; attempt < 8; attempt++) {
    const doc = await authorizeMachine(deps, principal, machineId);
    if (hb.pool !== doc.pool) {
      throw conflict(
        `machine ${machineId} is registered in pool ${doc.pool} but its heartbeat says ${hb.pool}: fix the agent's pool or re-register the machine with --pool ${hb.pool}`,
      );
    }
    const at = new Date(deps.now()).toISOString();
    const next: MachineDoc = {
      ...doc,
      slots: Math.min(doc.registered_slots, hb.slots),
      agent_slots: hb.slots,
      queue_depth: hb.queue_depth ?? 0,
      unhealthy_reason: hb.unhealthy_reason ?? null,
      pinned: hb.pinned ?? doc.pinned ?? [],
      cache_entries: hb.cache_entries ? hb.cache_entries.slice(0, REPORTED_CACHE_ENTRIES) : null,
      // Cache orders go out in this answer: taken off the document in the same CAS.
      pending_evict: [],
      pending_prewarm: [],
      last_heartbeat_at: at,
      updated_at: at,
      draining: hb.draining,
      receiving: hb.receiving,
      agent_version: hb.agent_version ?? null,
      cached_user: hb.cached_loras.user,
      cached_shared: hb.cached_loras.shared,
      cache: hb.cache,
      download_bytes_per_second: hb.download_bytes_per_second ?? doc.download_bytes_per_second,
      running_jobs: hb.running_jobs,
    };
    try {
      await deps.machines.item(doc.id, doc.machine_id).replace(next, { accessCondition: { type: 'IfMatch', condition: doc._etag! } });
    } catch (err) {
      if (isPreconditionFailed(err)) continue;
      if ((err as { code?: number }).code === 413) throw new ApiError('too_large', 'heartbeat inventory is too large to store');
      throw err;
    }
    await rollupCounterDelta(deps, machineId, doc.cache?.counters, hb.cache.counters);
    const [stop_jobs] = await Promise.all([jobsToStop(deps, machineId, hb.running_jobs), onRecorded?.(doc, next)]);
    const answer: HeartbeatResponse = { ok: true, stop_jobs, ...(await refreshedToken(deps, principal, doc)) };
    // The orders as read (`next` has them cleared: they go out in this answer).
    if (doc.admin_drained) answer.admin_drained = true;
    if (doc.pending_evict?.length) answer.evict = doc.pending_evict;
    if (doc.pending_prewarm?.length) answer.prewarm = await prewarmUrls(deps, doc.pending_prewarm);
    if (hb.slots > next.registered_slots) {
      answer.warnings = [
        `SLOTS=${hb.slots} is above this machine's admin limit of ${next.registered_slots}: the scheduler uses ${next.registered_slots}. Lower SLOTS, or raise the limit: lora-router machines register ${machineId} --pool ${next.pool} --slots ${hb.slots}`,
      ];
    }
    return answer;
  }
  throw conflict(`machine ${machineId} is changing too fast; send the next heartbeat`);
}

/**
 * Adds what a machine's cumulative cache counters moved since its last stored heartbeat to the fleet's rollup buckets
 * (evictions, thrash, bytes downloaded over time). Runs after the heartbeat's CAS, so each delta is added once. A
 * counter that went down (a new cache database) counts from zero. The first stored heartbeat of a registration is the
 * baseline: its counters are what the cache did before (a re-registered machine, a rebuilt control plane), and the
 * agent heartbeats before it takes any work, so nothing of this registration is in them.
 */
async function rollupCounterDelta(deps: CoreDeps, machineId: string, before: CacheCounters | undefined, after: CacheCounters): Promise<void> {
  if (!before) return;
  const delta = emptyCounters();
  let moved = false;
  for (const k of Object.keys(delta) as (keyof CacheCounters)[]) {
    const prev = before[k] ?? 0;
    delta[k] = after[k] >= prev ? after[k] - prev : after[k];
    if (delta[k] > 0) moved = true;
  }
  if (!moved) return;
  try {
    await addToRollups(deps.events, [FLEET_SCOPE], deps.now(), (d) => addMachineDelta(d, delta));
  } catch (err) {
    deps.log.warn({ err: (err as Error).message, machine_id: machineId }, 'metrics rollup (heartbeat) not written');
  }
}

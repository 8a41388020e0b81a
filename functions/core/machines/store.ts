// Machine registration, machine-token checks and heartbeats. All writes are CAS on the machine document's ETag.
import type { Container } from '@azure/cosmos';
import type { HeartbeatResponse, Heartbeat, RegisterMachineRequest } from '../../../contract/machines.js';
import { issueMachineToken, type Principal } from '../auth.js';
import { ApiError, conflict, forbidden, unauthorized } from '../errors.js';
import { isConflict, isNotFound, isPreconditionFailed } from '../sdk-errors.js';
import type { CoreDeps } from '../deps.js';
import { ensureLedger } from './ledger.js';
import { newMachineDoc, type MachineDoc, type PrewarmOrder } from './model.js';

/** How long a pre-warm download URL stays valid. */
const PREWARM_SAS_MINUTES = 30;

async function prewarmUrls(deps: CoreDeps, orders: PrewarmOrder[]): Promise<NonNullable<HeartbeatResponse['prewarm']>> {
  const expires = new Date(deps.now() + PREWARM_SAS_MINUTES * 60_000);
  return Promise.all(
    orders.map(async (o) => ({ kind: o.kind, key: o.key, size_bytes: o.size_bytes, sha256: o.sha256, download_url: await deps.blobSas.url(o.container, o.blob_name, 'read', expires) })),
  );
}

export async function readMachine(machines: Container, machineId: string): Promise<MachineDoc | null> {
  try {
    const { resource } = await machines.item(machineId, machineId).read<MachineDoc>();
    return resource && resource.doc_type === 'machine' ? resource : null;
  } catch (err) {
    if (isNotFound(err)) return null;
    throw err;
  }
}

export async function listMachineDocs(machines: Container): Promise<MachineDoc[]> {
  const { resources } = await machines.items.query<MachineDoc>('SELECT * FROM c WHERE c.doc_type = "machine"').fetchAll();
  return resources;
}

export interface Registration {
  doc: MachineDoc;
  created: boolean;
  token: string;
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
    const token = await issueMachineToken(deps.config.auth.machineTokenSecret, doc.machine_id, doc.token_version);
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

export async function recordHeartbeat(deps: CoreDeps, principal: Principal, machineId: string, hb: Heartbeat): Promise<HeartbeatResponse> {
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
      unhealthy_reason: hb.unhealthy_reason ?? null,
      pinned: hb.pinned ?? doc.pinned ?? [],
      // Cache orders go out in this answer: taken off the document in the same CAS.
      pending_evict: [],
      pending_prewarm: [],
      last_heartbeat_at: at,
      updated_at: at,
      draining: hb.draining,
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
    const answer: HeartbeatResponse = { ok: true, stop_jobs: await jobsToStop(deps, machineId, hb.running_jobs) };
    if (doc.admin_drained) answer.admin_drained = true;
    if (doc.pending_evict?.length) answer.evict = doc.pending_evict;
    if (doc.pending_prewarm?.length) answer.prewarm = await prewarmUrls(deps, doc.pending_prewarm);
    if (hb.slots > doc.registered_slots) {
      answer.warnings = [
        `SLOTS=${hb.slots} is above this machine's admin limit of ${doc.registered_slots}: the scheduler uses ${doc.registered_slots}. Lower SLOTS, or raise the limit: lora-router machines register ${machineId} --pool ${doc.pool} --slots ${hb.slots}`,
      ];
    }
    return answer;
  }
  throw conflict(`machine ${machineId} is changing too fast; send the next heartbeat`);
}

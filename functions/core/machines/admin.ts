// Day-2 controls for operators (admin only): drain/undrain, deregister, one machine's detail, and cache orders
// (evict a LoRA from one machine or all, pre-warm a LoRA onto chosen machines). Cache orders wait on the machine
// document and go out in the next heartbeat answer (store.ts), so they need no new channel to the agent; the agent
// applies them under its own rules (budget, pins, in-use protection). Every write is a CAS on the machine's ETag.
import type { CacheKey, MachineDetail } from '../../../contract/machines.js';
import { conflict, notFound } from '../errors.js';
import { isNotFound, isPreconditionFailed } from '../sdk-errors.js';
import type { CoreDeps } from '../deps.js';
import { ACTIVE_STATUSES, claimedAt } from '../jobs/model.js';
import { SHARED_OWNER, sharedLoraDocId, type LoraDoc } from '../loras/records.js';
import { ledgerId } from './ledger.js';
import { toMachineView, type MachineDoc, type PrewarmOrder } from './model.js';
import { listMachineDocs, readMachine } from './store.js';

/** Applies `change` to the machine with a CAS, re-reading on a lost race. 404 when the machine is not registered. */
export async function updateMachine(deps: CoreDeps, machineId: string, change: (m: MachineDoc) => MachineDoc): Promise<MachineDoc> {
  for (let attempt = 0; attempt < 8; attempt++) {
    const doc = await readMachine(deps.machines, machineId);
    if (!doc) throw notFound(`machine ${machineId}`);
    const next = { ...change(doc), updated_at: new Date(deps.now()).toISOString() };
    try {
      const { resource } = await deps.machines.item(doc.id, doc.machine_id).replace<MachineDoc>(next, {
        accessCondition: { type: 'IfMatch', condition: doc._etag! },
      });
      return resource ?? next;
    } catch (err) {
      if (isPreconditionFailed(err)) continue;
      throw err;
    }
  }
  throw conflict(`machine ${machineId} is changing too fast; try again`);
}

export function setAdminDrained(deps: CoreDeps, machineId: string, drained: boolean): Promise<MachineDoc> {
  return updateMachine(deps, machineId, (m) => ({ ...m, admin_drained: drained }));
}

interface ActiveJobRow {
  id: string;
  status: string;
  epoch: number;
  assigned_at: string | null;
  claimed_at?: string | null;
  started_at: string | null;
}

async function activeJobsOn(deps: CoreDeps, machineId: string): Promise<ActiveJobRow[]> {
  const { resources } = await deps.jobs.items
    .query<ActiveJobRow>({
      query: `SELECT c.id, c.status, c.epoch, c.assigned_at, c.claimed_at, c.started_at FROM c WHERE c.doc_type = "job" AND c.machine_id = @m AND c.status IN (${ACTIVE_STATUSES.map((s) => `"${s}"`).join(',')})`,
      parameters: [{ name: '@m', value: machineId }],
    })
    .fetchAll();
  return resources;
}

/** A live agent beats every few seconds, each beat a new ETag: the delete re-reads and re-checks this many times. */
const DELETE_ATTEMPTS = 5;

/**
 * Deregisters a machine: its document and slot ledger go, so its token stops working (the agent exits with a clear
 * code). Refused (409) while jobs are assigned to or running on it: drain it first and wait for them to finish.
 */
export async function deleteMachine(deps: CoreDeps, machineId: string): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    const doc = await readMachine(deps.machines, machineId);
    if (!doc) throw notFound(`machine ${machineId}`);
    const active = (await activeJobsOn(deps, machineId)).filter((j) => j.status !== 'pending');
    if (active.length > 0) {
      throw conflict(
        `machine ${machineId} still has ${active.length} job(s) assigned or running (${active.slice(0, 5).map((j) => j.id).join(', ')}); drain it (lora-router machines drain ${machineId}) and delete it once they finish`,
        { jobs: active.map((j) => j.id) },
      );
    }
    try {
      // IfMatch: nothing was assigned here between the check above and the delete.
      await deps.machines.item(doc.id, doc.machine_id).delete({ accessCondition: { type: 'IfMatch', condition: doc._etag! } });
      break;
    } catch (err) {
      if (isNotFound(err)) throw notFound(`machine ${machineId}`);
      if (!isPreconditionFailed(err)) throw err;
      if (attempt >= DELETE_ATTEMPTS) throw conflict(`machine ${machineId} kept changing while being deleted (${DELETE_ATTEMPTS} tries); try again`);
    }
  }
  await deps.machines
    .item(ledgerId(machineId), machineId)
    .delete()
    .catch((err: unknown) => {
      if (!isNotFound(err)) throw err;
    });
}

export async function machineDetail(deps: CoreDeps, machineId: string): Promise<MachineDetail> {
  const doc = await readMachine(deps.machines, machineId);
  if (!doc) throw notFound(`machine ${machineId}`);
  const jobs = await activeJobsOn(deps, machineId);
  const running = jobs.filter((j) => j.status === 'running').length;
  return {
    ...toMachineView(doc, deps.now(), deps.config.machineLivenessSeconds, running),
    cached: { user: doc.cached_user, shared: doc.cached_shared },
    pinned: doc.pinned ?? [],
    cache_entries: doc.cache_entries ?? null,
    // The slot is held from the claim; a record older than claimed_at has the claim time in started_at.
    jobs: jobs.map((j) => ({ job_id: j.id, status: j.status, epoch: j.epoch, assigned_at: j.assigned_at, claimed_at: claimedAt(j), started_at: j.started_at })),
    pending_evict: doc.pending_evict ?? [],
    pending_prewarm: (doc.pending_prewarm ?? []).map((p) => ({ kind: p.kind, key: p.key }) as CacheKey),
  };
}

const sameKey = (a: CacheKey, b: CacheKey): boolean => a.kind === b.kind && a.key === b.key;

/** Queues an eviction on one machine (404 if unknown) or on every registered machine. Returns the machines ordered. */
export async function orderEvict(deps: CoreDeps, lora: CacheKey, machineId?: string): Promise<string[]> {
  const ids = machineId ? [machineId] : (await listMachineDocs(deps.machines)).map((m) => m.machine_id);
  const done: string[] = [];
  for (const id of ids) {
    try {
      await updateMachine(deps, id, (m) => ({
        ...m,
        pending_evict: [...(m.pending_evict ?? []).filter((k) => !sameKey(k, lora)), lora].slice(-1000),
        pending_prewarm: (m.pending_prewarm ?? []).filter((k) => !sameKey(k, lora)),
      }));
      done.push(id);
    } catch (err) {
      if (machineId || (err as { code?: string }).code !== 'not_found') throw err; // deregistered meanwhile: skip
    }
  }
  return done;
}

/** The LoRA's record if it is ready (404 unknown, 409 not ready): what a pre-warm fetches. */
export async function readReadyLora(deps: CoreDeps, lora: CacheKey): Promise<LoraDoc> {
  let doc: LoraDoc | undefined;
  if (lora.kind === 'shared') {
    try {
      doc = (await deps.loras.item(sharedLoraDocId(lora.key), SHARED_OWNER).read<LoraDoc>()).resource;
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
  } else {
    const { resources } = await deps.loras.items
      .query<LoraDoc>({ query: 'SELECT * FROM c WHERE c.id = @id AND c.kind = "user"', parameters: [{ name: '@id', value: lora.key }] })
      .fetchAll();
    doc = resources[0];
  }
  if (!doc) throw notFound(`${lora.kind} LoRA ${lora.key}`);
  if (doc.status !== 'ready') throw conflict(`${lora.kind} LoRA ${lora.key} is ${doc.status}, not ready; only ready LoRAs can be pre-warmed`);
  return doc;
}

/** Queues a pre-warm of a ready LoRA on each named machine (all must be registered: 404 names the first unknown one). */
export async function orderPrewarm(deps: CoreDeps, lora: CacheKey, machineIds: string[]): Promise<string[]> {
  const doc = await readReadyLora(deps, lora);
  const unique = [...new Set(machineIds)];
  for (const id of unique) if (!(await readMachine(deps.machines, id))) throw notFound(`machine ${id}`);
  const order: PrewarmOrder = { kind: lora.kind, key: lora.key, size_bytes: doc.size_bytes, sha256: doc.sha256 ?? '', container: doc.container, blob_name: doc.blob_name };
  for (const id of unique) {
    await updateMachine(deps, id, (m) => ({
      ...m,
      pending_prewarm: [...(m.pending_prewarm ?? []).filter((k) => !sameKey(k, lora)), order].slice(-100),
      pending_evict: (m.pending_evict ?? []).filter((k) => !sameKey(k, lora)),
    }));
  }
  return unique;
}

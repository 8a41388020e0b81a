// The slot ledger: one document per machine (`machines` container, same partition as the machine, id `slots:<id>`)
// listing the (job, epoch) pairs that hold one of its slots. It is the capacity guard that per-job compare-and-swap
// cannot give: two scheduler passes working from different snapshots could each hand a machine its last free slot.
// A pass first adds its jobs to the ledger (a CAS on the ledger's ETag, so passes serialize per machine), and only then
// moves each job pending → assigned. So every job assigned to a machine at its current epoch is in the ledger, and
// the ledger never lists more holders than the machine has slots (slots + queue_depth when its agent takes queued
// dispatches: a queue position is a reserved slot of another kind, held from assignment like any slot).
//
// A pass tries the ledger as its snapshot read it first (its ETag fails the CAS if anything changed since), then the
// stored one. Holders are pruned lazily, by the next pass that needs the machine, and only on fresh evidence: the job (read now,
// or just written by the same request: a run's outcome) is no longer assigned/running on this machine at that epoch. A holder whose job is not written yet (epoch still
// below the reserved one) is kept for RESERVATION_GRACE_MS: that is a concurrent pass between its two writes.
import type { Container } from '@azure/cosmos';
import { isConflict, isNotFound, isPreconditionFailed } from '../sdk-errors.js';
import { mapLimit } from '../map-limit.js';
import type { CoreDeps } from '../deps.js';
import type { JobDoc } from '../jobs/model.js';
import { readJob } from '../jobs/store.js';

export const RESERVATION_GRACE_MS = 60_000;

export interface SlotHolder {
  job_id: string;
  tenant_id: string;
  epoch: number;
  reserved_at_ms: number;
}

export interface LedgerDoc {
  id: string;
  machine_id: string;
  doc_type: 'slot_ledger';
  holders: SlotHolder[];
  updated_at: string;
  _etag?: string;
}

export const ledgerId = (machineId: string): string => `slots:${machineId}`;

/** What a pass already knows about a job (from its snapshot): enough to keep a holder without another read. */
export interface KnownJob {
  status: JobDoc['status'];
  machine_id: string | null;
  epoch: number;
}

export type HolderState = 'alive' | 'in_flight' | 'dead';

/** A holder's state given the job as read (null = the job is gone). */
export function holderState(h: SlotHolder, machineId: string, job: KnownJob | null, nowMs: number): HolderState {
  if (job && job.epoch === h.epoch && job.machine_id === machineId && (job.status === 'assigned' || job.status === 'running')) return 'alive';
  if (job && job.epoch < h.epoch && nowMs - h.reserved_at_ms < RESERVATION_GRACE_MS) return 'in_flight';
  return 'dead';
}

async function readLedger(machines: Container, machineId: string): Promise<LedgerDoc | null> {
  try {
    const { resource } = await machines.item(ledgerId(machineId), machineId).read<LedgerDoc>();
    return resource ?? null;
  } catch (err) {
    if (isNotFound(err)) return null;
    throw err;
  }
}

export async function ensureLedger(machines: Container, machineId: string, nowMs: number): Promise<LedgerDoc> {
  const existing = await readLedger(machines, machineId);
  if (existing) return existing;
  try {
    const { resource } = await machines.items.create<LedgerDoc>({
      id: ledgerId(machineId),
      machine_id: machineId,
      doc_type: 'slot_ledger',
      holders: [],
      updated_at: new Date(nowMs).toISOString(),
    });
    return resource!;
  } catch (err) {
    if (!isConflict(err)) throw err;
    return (await readLedger(machines, machineId))!;
  }
}

export async function readAllLedgers(machines: Container): Promise<Map<string, LedgerDoc>> {
  const { resources } = await machines.items.query<LedgerDoc>('SELECT * FROM c WHERE c.doc_type = "slot_ledger"').fetchAll();
  return new Map(resources.map((l) => [l.machine_id, l]));
}

/** Holders that still count against the machine's slots per the snapshot (no reads; conservative: unknown = busy). */
export function countBusyHolders(ledger: LedgerDoc | undefined, machineId: string, known: Map<string, KnownJob>, nowMs: number): number {
  if (!ledger) return 0;
  let n = 0;
  for (const h of ledger.holders) {
    const job = known.get(h.job_id);
    // Not in the snapshot of active jobs: finished or cancelled, so free. (A reservation still being written belongs
    // to a job this snapshot read as pending, so it is known and counted below.) Counting it busy kept a machine
    // "full" for RESERVATION_GRACE_MS after every quick job; reserveSlots re-reads holders before relying on this.
    if (!job) continue;
    if (holderState(h, machineId, job, nowMs) !== 'dead') n++;
  }
  return n;
}

export interface Candidate {
  job_id: string;
  tenant_id: string;
  /** The epoch the job will be assigned with (its current epoch + 1). */
  epoch: number;
}

/**
 * Reserves slots on one machine for as many candidates as fit, in order. Returns the reserved candidates (a candidate
 * already reserved at the same epoch by a concurrent pass counts as reserved: the job CAS decides who assigns it).
 */
export async function reserveSlots(
  deps: CoreDeps,
  machineId: string,
  slots: number,
  candidates: Candidate[],
  known: Map<string, KnownJob>,
  /**
   * Jobs this request has itself just written (the state its own CAS stored), as good as a fresh read for dropping a
   * holder: a holder found dead by its job's own transition stays dead (epochs only grow, and a finished job at that
   * epoch never runs again).
   */
  settled?: ReadonlyMap<string, KnownJob>,
  /**
   * The ledger as the pass's snapshot read it: tried first, without reading it again. Its ETag makes the CAS fail if
   * it changed since; then (or when it shows no room) the stored one is read and decided on, as without it.
   */
  snapshotLedger?: LedgerDoc,
): Promise<{ reserved: Candidate[]; reservedAtMs: number; stored?: LedgerDoc }> {
  let given = snapshotLedger?._etag ? snapshotLedger : undefined;
  for (let attempt = 0; attempt < 8; attempt++) {
    const nowMs = deps.now();
    const fromSnapshot = given !== undefined;
    const ledger = given ?? (await ensureLedger(deps.machines, machineId, nowMs));
    given = undefined;
    // Classify holders: the snapshot may keep one; only a fresh read may drop one.
    const states = await mapLimit(ledger.holders, 8, async (h): Promise<HolderState> => {
      const k = known.get(h.job_id);
      if (k && holderState(h, machineId, k, nowMs) !== 'dead') return 'alive';
      const own = settled?.get(h.job_id);
      if (own && holderState(h, machineId, own, nowMs) === 'dead') return 'dead';
      const fresh = await readJob(deps.jobs, h.tenant_id, h.job_id);
      return holderState(h, machineId, fresh, nowMs);
    });
    const keep = ledger.holders.filter((_, i) => states[i] !== 'dead');
    const pruned = keep.length !== ledger.holders.length;
    const held = new Set(keep.map((h) => `${h.job_id}:${h.epoch}`));
    const reserved: Candidate[] = [];
    const added: SlotHolder[] = [];
    let free = slots - keep.length;
    for (const c of candidates) {
      if (held.has(`${c.job_id}:${c.epoch}`)) {
        reserved.push(c);
      } else if (free > 0 && !keep.some((h) => h.job_id === c.job_id && h.epoch >= c.epoch)) {
        free--;
        reserved.push(c);
        added.push({ job_id: c.job_id, tenant_id: c.tenant_id, epoch: c.epoch, reserved_at_ms: nowMs });
      }
    }
    if (added.length === 0 && !pruned) {
      // An older view that has no room for them may be out of date: decide on the stored ledger before giving up.
      if (fromSnapshot && reserved.length < candidates.length) continue;
      return { reserved, reservedAtMs: nowMs };
    }
    const next: LedgerDoc = { ...ledger, holders: [...keep, ...added], updated_at: new Date(nowMs).toISOString() };
    try {
      const { resource } = await deps.machines.item(ledger.id, machineId).replace(next, { accessCondition: { type: 'IfMatch', condition: ledger._etag! } });
      return { reserved, reservedAtMs: nowMs, ...(resource ? { stored: resource } : {}) };
    } catch (err) {
      if (!isPreconditionFailed(err)) throw err;
      // Another pass changed this machine's ledger: decide again on the fresh one.
    }
  }
  return { reserved: [], reservedAtMs: deps.now() };
}

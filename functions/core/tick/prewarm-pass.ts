// Predictive pre-warming, the control plane's part (issue 14 item 4; off unless PREWARM_HINTS=true). Run by the
// scheduler timer after its pass. It counts the jobs created since the last run into the decayed demand per LoRA
// (prewarm/demand.ts), picks the LoRAs whose demand outgrows their holders and the next HRW home of each
// (prewarm/hints.ts), and queues each hint on that machine's document as a pre-warm order marked `hint`, so it goes
// out in the machine's next heartbeat answer, the path of the admin's pre-warm orders (machines/admin.ts). The agent
// fetches hints at low priority and may decline them (worker-agent/src/prewarm-hints.ts).
//
// State: one document in the machines container (`prewarm-demand`), written with a CAS on its ETag. Two timer runs
// racing compute from the same document; the loser's CAS fails (412) and it sends no hints, so a job is counted once
// and a hint is sent once. A crash after the CAS and before the machine writes loses those hints only (harmless).
// Cost per run: one point read, one query for the new jobs (their id, pool, created_at, loras), one machines query,
// one replace, plus per hint a LoRA read and a machine CAS (at most PrewarmSettings.maxHints).
import type { CoreDeps } from '../deps.js';
import { isPreconditionFailed, isConflict } from '../sdk-errors.js';
import { emptyDemand, observeJobs, type DemandJob, type DemandState } from '../prewarm/demand.js';
import { chooseHints, DEFAULT_HINT_OPTIONS, type Hint, type HintMachine } from '../prewarm/hints.js';
import { DEFAULT_PREWARM_SETTINGS } from '../prewarm/settings.js';
import { acceptsWork, isLive, isReceiving, type MachineDoc, type PrewarmOrder } from '../machines/model.js';
import { listMachineDocs } from '../machines/store.js';
import { readReadyLora, updateMachine } from '../machines/admin.js';
import type { JobDoc } from '../jobs/model.js';
import { learnedRunTimes } from './run-time.js';
import { readItem } from '../point-read.js';

export const DEMAND_DOC_ID = 'prewarm-demand';
/** New jobs read per run at most (the oldest first; the rest are counted next time). */
const MAX_NEW_JOBS = 2_000;

export interface DemandDoc {
  id: typeof DEMAND_DOC_ID;
  machine_id: typeof DEMAND_DOC_ID;
  doc_type: 'prewarm_demand';
  demand: DemandState;
  /** Hints sent: the machine counts as receiving the LoRA until `until_ms` (or until its heartbeat lists it). */
  hinted: { machine_id: string; kind: 'user' | 'shared'; key: string; until_ms: number }[];
  updated_at: string;
  _etag?: string;
}

export interface PrewarmPassResult {
  counted: number;
  tracked: number;
  hints: Hint[];
  /** Another run wrote the demand first: this one sent nothing. */
  lostRace: boolean;
}

/**
 * The fleet as the hint chooser sees it: a machine counts as holding a LoRA it caches, was hinted recently (`hinted`)
 * or has a pre-warm order pending for, until its heartbeat lists it.
 */
export function hintMachines(deps: CoreDeps, machineDocs: readonly MachineDoc[], hinted: DemandDoc['hinted'], nowMs: number): HintMachine[] {
  return machineDocs.map((m) => {
    const keys = new Set(hinted.filter((h) => h.machine_id === m.machine_id).map((h) => h.key));
    for (const p of m.pending_prewarm ?? []) keys.add(p.key);
    const cachedUser = new Set(m.cached_user);
    const cachedShared = new Set(m.cached_shared);
    for (const k of keys) if (cachedUser.has(k) || cachedShared.has(k)) keys.delete(k); // arrived: no longer outstanding
    return {
      id: m.machine_id,
      pool: m.pool,
      slots: m.slots,
      eligible: isLive(m, nowMs, deps.config.machineLivenessSeconds) && acceptsWork(m) && isReceiving(m),
      cachedUser,
      cachedShared,
      budgetBytes: m.cache?.budget_bytes ?? 0,
      hinted: keys,
    };
  });
}

/** Queues a hint on its machine's document (it leaves with the next heartbeat answer). False when it could not. */
export async function queueHint(deps: CoreDeps, h: Hint, order: PrewarmOrder): Promise<boolean> {
  try {
    await updateMachine(deps, h.machineId, (m) => ({
      ...m,
      pending_prewarm: [...(m.pending_prewarm ?? []).filter((p) => !(p.kind === order.kind && p.key === order.key)), order].slice(-100),
    }));
    return true;
  } catch (err) {
    deps.log.warn({ machine_id: h.machineId, key: h.key, err: (err as Error).message }, 'pre-warm hint not queued');
    return false;
  }
}

export const readDemandDoc = (deps: CoreDeps): Promise<DemandDoc | null> => readItem<DemandDoc>(deps.machines, DEMAND_DOC_ID, DEMAND_DOC_ID);

export async function runPrewarmPass(deps: CoreDeps): Promise<PrewarmPassResult> {
  const nowMs = deps.now();
  const s = DEFAULT_PREWARM_SETTINGS;
  const doc = await readDemandDoc(deps);
  const before = doc?.demand ?? emptyDemand();
  const sinceMs = Math.max(before.countedUpToMs, nowMs - 2 * s.halfLifeMs);
  const { resources: rows } = await deps.jobs.items
    .query<Pick<JobDoc, 'id' | 'pool' | 'created_at' | 'loras'>>({
      query: `SELECT TOP ${MAX_NEW_JOBS} c.id, c.pool, c.created_at, c.loras FROM c WHERE c.doc_type = "job" AND c.created_at >= @since ORDER BY c.created_at ASC`,
      parameters: [{ name: '@since', value: new Date(sinceMs).toISOString() }],
    })
    .fetchAll();
  const jobs: DemandJob[] = rows.map((r) => ({
    id: r.id,
    pool: r.pool,
    createdAtMs: Date.parse(r.created_at),
    loras: r.loras.map((l) => ({ kind: l.kind, key: l.key, sizeBytes: l.size_bytes })),
  }));
  const demandOpts = { halfLifeMs: s.halfLifeMs, minRate: s.minRate, maxEntries: s.maxEntries };
  const { state, counted } = observeJobs(before, jobs, nowMs, demandOpts);

  const [machineDocs, runTimes] = await Promise.all([listMachineDocs(deps.machines), learnedRunTimes(deps)]);
  const expectedJobSeconds = runTimes.fleetSeconds;
  const hinted = (doc?.hinted ?? []).filter((h) => h.until_ms > nowMs);
  const machines = hintMachines(deps, machineDocs, hinted, nowMs);
  const hints = chooseHints(state.entries, machines, expectedJobSeconds, nowMs, {
    ...DEFAULT_HINT_OPTIONS,
    halfLifeMs: s.halfLifeMs,
    maxHints: s.maxHints,
    headroom: deps.config.prewarmHeadroom,
    minColdNeed: deps.config.prewarmMinColdNeed,
  });
  // What each hint fetches (a read URL is minted with the heartbeat answer); a LoRA deleted or not ready is skipped.
  const orders: [Hint, PrewarmOrder][] = [];
  for (const h of hints) {
    try {
      const lora = await readReadyLora(deps, { kind: h.kind, key: h.key } as Parameters<typeof readReadyLora>[1]);
      orders.push([h, { kind: h.kind, key: h.key, size_bytes: lora.size_bytes, sha256: lora.sha256 ?? '', container: lora.container, blob_name: lora.blob_name, hint: true }]);
    } catch (err) {
      deps.log.info({ key: h.key, err: (err as Error).message }, 'pre-warm hint skipped');
    }
  }
  const next: DemandDoc = {
    id: DEMAND_DOC_ID,
    machine_id: DEMAND_DOC_ID,
    doc_type: 'prewarm_demand',
    demand: state,
    hinted: [...hinted, ...orders.map(([h]) => ({ machine_id: h.machineId, kind: h.kind, key: h.key, until_ms: nowMs + s.hintTtlMs }))],
    updated_at: new Date(nowMs).toISOString(),
  };
  try {
    if (doc) await deps.machines.item(doc.id, doc.machine_id).replace(next, { accessCondition: { type: 'IfMatch', condition: doc._etag! } });
    else await deps.machines.items.create(next);
  } catch (err) {
    if (isPreconditionFailed(err) || isConflict(err)) return { counted: 0, tracked: state.entries.length, hints: [], lostRace: true };
    throw err;
  }
  const sent: Hint[] = [];
  for (const [h, order] of orders) if (await queueHint(deps, h, order)) sent.push(h);
  return { counted, tracked: state.entries.length, hints: sent, lostRace: false };
}

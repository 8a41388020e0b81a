// A pre-warm hint for a LoRA a user has just uploaded (issue 14 item 4: "or a user has just uploaded one"; on only with
// PREWARM_HINTS). Called by the upload triggers once the LoRA is ready: before its first job, its first HRW home in the
// pool the user's latest job ran in (the default pool if none) is told to fetch it over an idle link, so that job, sent
// there by the `hrw` scorer like any cold job, starts without the download. The same hint chooser, the same order on the
// machine document and the same agent side as the timer's demand hints (prewarm-pass.ts); a machine that already holds
// the LoRA, or a fleet with no eligible machine, gets nothing. Best effort: a failure here never fails the upload.
import { DEFAULT_POOL } from '../../../contract/ids.js';
import type { CoreDeps } from '../deps.js';
import type { LoraDoc } from '../loras/records.js';
import { listMachineDocs } from '../machines/store.js';
import { chooseHints, DEFAULT_HINT_OPTIONS, type Hint } from '../prewarm/hints.js';
import { hintMachines, queueHint, readDemandDoc } from './prewarm-pass.js';

/** The pool of the tenant's most recent job (one partition: jobs are partitioned by tenant), or null. */
async function latestPool(deps: CoreDeps, tenantId: string): Promise<string | null> {
  const { resources } = await deps.jobs.items
    .query<{ pool: string }>(
      { query: 'SELECT TOP 1 c.pool FROM c WHERE c.doc_type = "job" ORDER BY c.created_at DESC' },
      { partitionKey: tenantId },
    )
    .fetchAll();
  return resources[0]?.pool ?? null;
}

/** Queues a hint for a just-uploaded user LoRA on its first HRW home that lacks it. Returns the hint, or null. */
export async function hintUploadedLora(deps: CoreDeps, lora: LoraDoc): Promise<Hint | null> {
  if (!deps.config.prewarmHints || lora.kind !== 'user' || lora.status !== 'ready') return null;
  try {
    const nowMs = deps.now();
    const pool = (await latestPool(deps, lora.owner_id)) ?? DEFAULT_POOL;
    const [machineDocs, demand] = await Promise.all([listMachineDocs(deps.machines), readDemandDoc(deps)]);
    const machines = hintMachines(deps, machineDocs, (demand?.hinted ?? []).filter((h) => h.until_ms > nowMs), nowMs);
    // One entry that earns a first copy when nobody holds it (minColdNeed 0) and nothing more (headroom ∞).
    const [hint] = chooseHints(
      [{ pool, kind: 'user', key: lora.key, sizeBytes: lora.size_bytes, rate: 1, atMs: nowMs }],
      machines,
      1,
      nowMs,
      { ...DEFAULT_HINT_OPTIONS, maxHints: 1, minColdNeed: 0, headroom: Number.POSITIVE_INFINITY },
    );
    if (!hint) return null;
    const order = { kind: 'user' as const, key: lora.key, size_bytes: lora.size_bytes, sha256: lora.sha256 ?? '', container: lora.container, blob_name: lora.blob_name, hint: true };
    if (!(await queueHint(deps, hint, order))) return null;
    deps.log.info({ key: lora.key, machine_id: hint.machineId, pool }, 'pre-warm hint for an upload queued');
    return hint;
  } catch (err) {
    deps.log.warn({ key: lora.key, err: (err as Error).message }, 'pre-warm hint for an upload not queued');
    return null;
  }
}

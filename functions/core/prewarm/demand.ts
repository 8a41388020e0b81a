// Demand per LoRA as an exponentially decayed rate (jobs per second), kept small enough to live in one Cosmos document
// (ADR-010 Phase 6, issue 14 item 4). Pure: the tick feeds it the jobs it sees, the simulator the jobs that arrive.
//
// Each job for a LoRA adds 1/τ to its rate and the rate decays as e^(−t/τ), τ = half-life / ln 2: for a steady
// stream of λ jobs per second the rate settles at λ, and a LoRA that stops being asked for fades by half every
// half-life. Updating costs O(the LoRAs of the new jobs); entries that fade below `minRate` are dropped.

export interface DemandKey {
  pool: string;
  kind: 'user' | 'shared';
  key: string;
}

export interface DemandEntry extends DemandKey {
  sizeBytes: number;
  /** Jobs per second as of `atMs`. */
  rate: number;
  atMs: number;
}

export interface DemandState {
  /** Jobs created at or before this instant have been counted (the tick's watermark). 0 = none yet. */
  countedUpToMs: number;
  /** Ids of counted jobs created exactly at `countedUpToMs` (a later job with the same instant is still new). */
  countedAtWatermark: string[];
  entries: DemandEntry[];
}

export interface DemandOptions {
  halfLifeMs: number;
  /** Entries whose rate falls below this (jobs per second) are forgotten. */
  minRate: number;
  /** At most this many entries are kept (the highest rates): bounds the document. */
  maxEntries: number;
}

export const DEFAULT_DEMAND_OPTIONS: DemandOptions = { halfLifeMs: 10 * 60_000, minRate: 1 / 3600, maxEntries: 500 };

/** A job as the tracker sees it. */
export interface DemandJob {
  id: string;
  pool: string;
  createdAtMs: number;
  loras: readonly { kind: 'user' | 'shared'; key: string; sizeBytes: number }[];
}

export const emptyDemand = (): DemandState => ({ countedUpToMs: 0, countedAtWatermark: [], entries: [] });

export const demandId = (k: DemandKey): string => `${k.pool}\u0000${k.kind}\u0000${k.key}`;

/** The entry's rate at `nowMs` (never negative; an entry from the future counts as now). */
export function rateAt(e: Pick<DemandEntry, 'rate' | 'atMs'>, nowMs: number, halfLifeMs: number): number {
  const dt = Math.max(0, nowMs - e.atMs);
  return e.rate * Math.pow(2, -dt / halfLifeMs);
}

/**
 * Counts the jobs not counted yet (created after the watermark, or at it and not in `countedAtWatermark`) and moves the
 * watermark to the newest one. Returns a new state (the input is not changed) with every entry decayed to `nowMs`.
 */
export function observeJobs(state: DemandState, jobs: readonly DemandJob[], nowMs: number, opts: DemandOptions = DEFAULT_DEMAND_OPTIONS): { state: DemandState; counted: number } {
  const tauMs = opts.halfLifeMs / Math.LN2;
  const atWatermark = new Set(state.countedAtWatermark);
  const fresh = jobs.filter((j) => j.createdAtMs > state.countedUpToMs || (j.createdAtMs === state.countedUpToMs && !atWatermark.has(j.id)));
  const byId = new Map<string, DemandEntry>();
  for (const e of state.entries) byId.set(demandId(e), { ...e, rate: rateAt(e, nowMs, opts.halfLifeMs), atMs: nowMs });
  let watermark = state.countedUpToMs;
  for (const j of fresh) {
    if (j.createdAtMs > watermark) watermark = j.createdAtMs;
    // A job created before `nowMs` has decayed since: it adds what it would have added then, decayed to now.
    const add = Math.exp(-Math.max(0, nowMs - j.createdAtMs) / tauMs) / (tauMs / 1000);
    for (const l of j.loras) {
      const id = demandId({ pool: j.pool, kind: l.kind, key: l.key });
      const e = byId.get(id);
      if (e) {
        e.rate += add;
        if (l.sizeBytes > 0) e.sizeBytes = l.sizeBytes;
      } else {
        byId.set(id, { pool: j.pool, kind: l.kind, key: l.key, sizeBytes: l.sizeBytes, rate: add, atMs: nowMs });
      }
    }
  }
  const entries = [...byId.values()].filter((e) => e.rate >= opts.minRate);
  entries.sort((a, b) => b.rate - a.rate || (demandId(a) < demandId(b) ? -1 : 1));
  entries.length = Math.min(entries.length, opts.maxEntries);
  const sameWatermark = watermark === state.countedUpToMs ? state.countedAtWatermark : [];
  const countedAtWatermark = [...sameWatermark, ...fresh.filter((j) => j.createdAtMs === watermark).map((j) => j.id)];
  return { state: { countedUpToMs: watermark, countedAtWatermark, entries }, counted: fresh.length };
}

// Which LoRAs to pre-fetch where (issue 14 item 4, predictive pre-warming). Pure: the tick and the simulator call it.
//
// A LoRA's demand outgrows its holders when the jobs it brings at once, rate × run time (Little's law), exceed
// `headroom` × the slots of the machines that hold it (or were just told to fetch it). Then its next home gets a hint:
// the first machine in its rendezvous-hash (HRW) ranking over the pool (scheduler/hash.ts, the ranking the `hrw`
// scorer sends its cold jobs to) that does not hold it, is live, takes work, has a budget the file fits in and no
// hint outstanding. A LoRA with no holder gets its first home only when its demand reaches `minColdNeed` jobs at
// once: a rare LoRA's first job fetches it itself. The machine fetches a hint at low priority (agent side) and may
// decline it (budget, recently used entries, pins).
import { hrwTopK, loraSeed, machineSeed } from '../scheduler/hash.js';
import { rateAt, type DemandEntry } from './demand.js';

export interface HintMachine {
  id: string;
  pool: string;
  slots: number;
  /** Live, not draining, accepting work, receiving. */
  eligible: boolean;
  cachedUser: ReadonlySet<string>;
  cachedShared: ReadonlySet<string>;
  budgetBytes: number;
  /** Keys this machine was hinted recently and may still be fetching (counted as holding them). */
  hinted: ReadonlySet<string>;
}

export interface HintOptions {
  halfLifeMs: number;
  /** Share of a holder's slots one LoRA may keep busy before it earns another copy. */
  headroom: number;
  /** Expected concurrent jobs before a LoRA without any holder gets a first copy. */
  minColdNeed: number;
  /** Hints per pass at most (the highest demand first). */
  maxHints: number;
  /** Hints a machine may have outstanding. */
  maxPerMachine: number;
  /** How deep in the HRW ranking a hint may go. */
  maxDepth: number;
}

export const DEFAULT_HINT_OPTIONS: HintOptions = { halfLifeMs: 10 * 60_000, headroom: 0.03, minColdNeed: 0.5, maxHints: 4, maxPerMachine: 1, maxDepth: 8 };

export interface Hint {
  machineId: string;
  pool: string;
  kind: 'user' | 'shared';
  key: string;
  sizeBytes: number;
  /** Expected concurrent jobs (rate × run time) and the holders' slots when it was chosen: why. */
  need: number;
  holderSlots: number;
}

/** Pre-fetch hints for the LoRAs whose demand outgrows their holders, highest demand first. */
export function chooseHints(
  demand: readonly DemandEntry[],
  machines: readonly HintMachine[],
  expectedJobSeconds: number,
  nowMs: number,
  opts: HintOptions = DEFAULT_HINT_OPTIONS,
): Hint[] {
  const pools = new Map<string, number[]>();
  machines.forEach((m, i) => {
    const list = pools.get(m.pool) ?? [];
    list.push(i);
    pools.set(m.pool, list);
  });
  const seeds = machines.map((m) => machineSeed(m.id));
  const outstanding = machines.map((m) => m.hinted.size);
  const ranked = demand
    .map((e) => ({ e, need: rateAt(e, nowMs, opts.halfLifeMs) * expectedJobSeconds }))
    .sort((a, b) => b.need - a.need);
  const hints: Hint[] = [];
  for (const { e, need } of ranked) {
    if (hints.length >= opts.maxHints) break;
    const members = pools.get(e.pool);
    if (!members) continue;
    let holderSlots = 0;
    let holders = 0;
    for (const i of members) {
      const m = machines[i]!;
      if (holds(m, e) && m.eligible) {
        holderSlots += m.slots;
        holders++;
      }
    }
    if (holders === 0 ? need < opts.minColdNeed : need <= opts.headroom * holderSlots) continue;
    for (const i of hrwTopK(loraSeed(e.kind, e.key), members, seeds, Math.min(members.length, holders + opts.maxDepth))) {
      const m = machines[i]!;
      if (holds(m, e)) continue;
      if (!m.eligible || outstanding[i]! >= opts.maxPerMachine || e.sizeBytes > m.budgetBytes) continue;
      outstanding[i]!++;
      hints.push({ machineId: m.id, pool: e.pool, kind: e.kind, key: e.key, sizeBytes: e.sizeBytes, need, holderSlots });
      break;
    }
  }
  return hints;
}

function holds(m: HintMachine, e: Pick<DemandEntry, 'kind' | 'key'>): boolean {
  return (e.kind === 'user' ? m.cachedUser : m.cachedShared).has(e.key) || m.hinted.has(e.key);
}

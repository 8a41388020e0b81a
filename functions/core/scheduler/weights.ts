// Policy names, default weights and their validation. Callers validate configuration at startup with these so a typo
// in SCHEDULER_POLICY or SCHEDULER_WEIGHTS stops the app instead of the first timer tick.
import type { Weights } from './types.js';

/** Valid values of `SchedulerInput.policy`. */
export const policyNames = ['affinity', 'adr010', 'fifo'] as const;
export type PolicyName = (typeof policyNames)[number];
/** The project default: start each job where it can start soonest, preferring cached LoRAs. */
export const DEFAULT_POLICY: PolicyName = 'affinity';

/** Typical job run time assumed by the load scorer when the caller gives none. */
export const DEFAULT_EXPECTED_JOB_SECONDS = 30;
/** Download speed assumed for a machine that has not measured one yet (50 MiB/s). */
export const DEFAULT_DOWNLOAD_BYTES_PER_SECOND = 50 * 1024 * 1024;

/**
 * Defaults, in points (1 point ≈ 1 second of expected start delay for the affinity policy):
 * - userHit 10 / sharedHit 5: ADR-010's +10/+5, used as is by `adr010` and, × `affinity` (1), by `affinity`. A cached
 *   LoRA is worth more than the seconds its download would take: a job that stays where its LoRA is leaves the other
 *   machines' caches (and the network) to other jobs.
 * - download 1: one point per expected second of download, so a 2 GB LoRA on a slow link outweighs a +10 hit elsewhere,
 *   and among cold machines the fastest link wins.
 * - load 0.2: queue wait is busy/slots × expectedJobSeconds (30 s → 0..6 points). The job has a free slot wherever it
 *   goes, so load spreads work and breaks ties; it is never strong enough to give up a cache hit.
 * - hrw 4: enough to send a cold LoRA to its rendezvous home over a moderately less loaded machine (up to half the
 *   slots busy), less than a hit, so once the LoRA is somewhere the hit wins.
 * - avoid 6: a machine that lost this job before is used only when it is clearly better (e.g. it holds the LoRA).
 * - overload 100, loadBound 1.5, loadBoundMinSlots 4: bounded load. Up to 4 busy slots a machine simply fills (machines
 *   of 1-4 slots are bounded by their capacity alone); beyond that it may run at most 1.5 × the pool's utilisation, and
 *   above that any machine within its bound wins, so a hot LoRA spreads to a few more machines.
 * - delay 2, delayCapSeconds 30: a job that would download waits for a full machine holding more of its LoRAs when
 *   that machine should start it within 2 × the download time, never past 30 s of age. Measured on the simulator's
 *   reference workload: −19 % bytes, +2 points of hit rate and a lower p95 than without it (docs/simulator.md).
 * - hitFirst 0, evict 0: measured, no gain on the reference workload (docs/simulator.md, "Experiments").
 */
export const DEFAULT_WEIGHTS: Readonly<Weights> = Object.freeze({
  userHit: 10,
  sharedHit: 5,
  affinity: 1,
  download: 1,
  load: 0.2,
  hrw: 4,
  avoid: 6,
  overload: 100,
  loadBound: 1.5,
  loadBoundMinSlots: 4,
  delay: 2,
  delayCapSeconds: 30,
  hitFirst: 0,
  evict: 0,
});

/** Valid keys of `SchedulerInput.weights` / SCHEDULER_WEIGHTS. */
export const weightNames: readonly (keyof Weights)[] = Object.freeze(Object.keys(DEFAULT_WEIGHTS) as (keyof Weights)[]);

export function isPolicyName(name: string): name is PolicyName {
  return (policyNames as readonly string[]).includes(name);
}

/** Returns the name typed as a policy, or throws an Error that lists the valid names. */
export function assertPolicyName(name: string): PolicyName {
  if (!isPolicyName(name)) {
    throw new Error(`Unknown scheduler policy "${name}". Valid policies: ${policyNames.join(', ')}.`);
  }
  return name;
}

/**
 * Defaults overlaid with `overrides`. Throws an Error naming the problem for an unknown name, a non-finite or negative
 * value, or a `loadBound` below 1.
 */
export function resolveWeights(overrides?: Readonly<Record<string, number | undefined>>): Weights {
  const weights: Weights = { ...DEFAULT_WEIGHTS };
  if (!overrides) return weights;
  for (const [name, value] of Object.entries(overrides)) {
    if (value === undefined) continue;
    if (!(weightNames as readonly string[]).includes(name)) {
      throw new Error(`Unknown scheduler weight "${name}". Valid weights: ${weightNames.join(', ')}.`);
    }
    if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
      throw new Error(`Scheduler weight "${name}" must be a finite number ≥ 0 (got ${String(value)}).`);
    }
    weights[name as keyof Weights] = value;
  }
  if (weights.loadBound < 1) throw new Error(`Scheduler weight "loadBound" must be ≥ 1 (got ${weights.loadBound}).`);
  return weights;
}

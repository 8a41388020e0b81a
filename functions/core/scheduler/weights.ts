// Policy names, weights (the registered scorers' weights plus the pass's own parameters), their defaults and their
// validation. Callers validate configuration at startup with these so a typo in SCHEDULER_POLICY or SCHEDULER_WEIGHTS
// stops the app instead of the first timer tick. A new scorer needs no edit here: its weight comes from registry.ts.
import { SCORERS, type ScorerWeight } from './registry.js';
import type { Scorer } from './scorers/scorer.js';

/** Valid values of `SchedulerInput.policy`. */
export const policyNames = ['affinity', 'adr010', 'fifo'] as const;
export type PolicyName = (typeof policyNames)[number];
/** The project default: start each job where it can start soonest, preferring cached LoRAs. */
export const DEFAULT_POLICY: PolicyName = 'affinity';

/** Typical job run time assumed by the load scorer when the caller gives none. */
export const DEFAULT_EXPECTED_JOB_SECONDS = 30;
/** Download speed assumed for a machine that has not measured one yet (50 MiB/s). */
export const DEFAULT_DOWNLOAD_BYTES_PER_SECOND = 50 * 1024 * 1024;

/** Tuning that is not one scorer's weight (a type, not an interface, so `Weights` fits a record of numbers). */
export type Parameters = {
  /** ADR-010 points per required user LoRA already on the machine (adr010, and the affinity scorer). */
  userHit: number;
  /** ADR-010 points per required shared LoRA already on the machine (adr010, and the affinity scorer). */
  sharedHit: number;
  /**
   * affinity: the bounded-load factor c (≥ 1). A machine is within its bound while its busy slots after taking the job
   * stay ≤ max(`loadBoundMinSlots`, ceil(c × pool utilisation after the job × its slots)). Over the bound it is not an
   * HRW home and it pays the `overload` penalty, so a hot LoRA spreads to more machines instead of piling onto one.
   */
  loadBound: number;
  /** affinity: busy slots a machine may always reach before the bound applies (small machines simply fill up). */
  loadBoundMinSlots: number;
  /**
   * affinity, delay scheduling (0 = off, the job always takes a free slot). A job that would have to download may stay
   * pending when a machine that holds more of its LoRAs is full but expected to free a slot within
   * `delay × the download time` (start wait + its own remaining download); see delay.ts and `delayCapSeconds`.
   */
  delay: number;
  /** affinity: a job is held back only while its age (now − createdAtMs) plus the expected wait stays ≤ this. */
  delayCapSeconds: number;
};

/**
 * All names accepted in `SchedulerInput.weights` and in the `SCHEDULER_WEIGHTS` setting (`resolveWeights` rejects
 * anything else): the parameters above and one weight per registered scorer (scorers/*.ts). Values are "points": the
 * picker takes the highest total.
 */
export type Weights = Parameters & Record<ScorerWeight, number>;

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
 * The scorers' defaults are in their own files (`defaultWeight`).
 */
const PARAMETER_DEFAULTS = {
  userHit: 10,
  sharedHit: 5,
  loadBound: 1.5,
  loadBoundMinSlots: 4,
  delay: 2,
  delayCapSeconds: 30,
} as const satisfies Parameters;

/** Defaults for `scorers` (the registered ones unless given) plus the parameters, in a stable order. */
export function defaultWeights(scorers: readonly Scorer[] = SCORERS): Record<string, number> {
  const { userHit, sharedHit, ...rest } = PARAMETER_DEFAULTS;
  const weights: Record<string, number> = { userHit, sharedHit };
  for (const s of scorers) weights[s.weight] = s.defaultWeight;
  return Object.assign(weights, rest);
}

export const DEFAULT_WEIGHTS: Readonly<Weights> = Object.freeze(defaultWeights() as Weights);

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
 * value, or a `loadBound` below 1. `extraScorers` (experiments) add their weights to the valid names.
 */
export function resolveWeights(
  overrides?: Readonly<Record<string, number | undefined>>,
  extraScorers: readonly Scorer[] = [],
): Weights {
  const weights = (extraScorers.length === 0 ? { ...DEFAULT_WEIGHTS } : defaultWeights([...SCORERS, ...extraScorers])) as Weights;
  if (!overrides) return weights;
  const names = Object.keys(weights);
  for (const [name, value] of Object.entries(overrides)) {
    if (value === undefined) continue;
    if (!names.includes(name)) {
      throw new Error(`Unknown scheduler weight "${name}". Valid weights: ${names.join(', ')}.`);
    }
    if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
      throw new Error(`Scheduler weight "${name}" must be a finite number ≥ 0 (got ${String(value)}).`);
    }
    (weights as Record<string, number>)[name] = value;
  }
  if (weights.loadBound < 1) throw new Error(`Scheduler weight "loadBound" must be ≥ 1 (got ${weights.loadBound}).`);
  return weights;
}

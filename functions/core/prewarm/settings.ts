// Settings of predictive pre-warming (issue 14 item 4). The control plane's part comes from app settings
// (PREWARM_HINTS, PREWARM_HEADROOM, ...; functions/core/config.ts); the agent's part (how idle an entry must be before a
// hint may evict it, how long it keeps a hint) from the agent's environment. The simulator takes both from here.

export interface PrewarmSettings {
  /** Hints on or off. Off by default: the simulator did not show a win (docs/simulator.md, "Predictive pre-warming"). */
  enabled: boolean;
  /** Half-life of the demand rate. */
  halfLifeMs: number;
  /** Demand below this (jobs per second) is forgotten. */
  minRate: number;
  /** LoRAs tracked at most. */
  maxEntries: number;
  /** Share of its holders' slots a LoRA may keep busy before it earns another copy. */
  headroom: number;
  /** Expected concurrent jobs before a LoRA with no holder gets a first copy. */
  minColdNeed: number;
  /** Hints per tick at most. */
  maxHints: number;
  /** A hinted machine counts as receiving the LoRA for this long (or until its heartbeat lists it). */
  hintTtlMs: number;
  /** Agent: a hint may evict only entries unused for at least this long (PREWARM_HINT_MIN_IDLE_SECONDS). */
  minIdleEvictMs: number;
  /** Agent: a hint not fetched within this long is dropped (its download URL is valid for 30 minutes). */
  agentHintTtlMs: number;
}

export const DEFAULT_PREWARM_SETTINGS: PrewarmSettings = {
  enabled: false,
  halfLifeMs: 10 * 60_000,
  minRate: 1 / 3600,
  maxEntries: 500,
  headroom: 0.03,
  minColdNeed: 0.5,
  maxHints: 4,
  hintTtlMs: 120_000,
  minIdleEvictMs: 30 * 60_000,
  agentHintTtlMs: 5 * 60_000,
};

// The stored shape of a GPU machine (Cosmos `machines`, partition key /machine_id): its registration (pool, slots,
// token version) and what its last heartbeat said (cache inventory, load, counters).
import type { CacheEntry, CacheKey, Heartbeat, MachineView } from '../../../contract/machines.js';

export interface MachineDoc {
  id: string;
  machine_id: string;
  doc_type: 'machine';
  pool: string;
  /** Slots the admin registered: a ceiling. */
  registered_slots: number;
  /** Slots the scheduler uses: min(registered, last reported by the agent). */
  slots: number;
  /** Bumped by every registration; machine tokens carry it, so re-registering revokes the previous token. */
  token_version: number;
  registered_at: string;
  updated_at: string;
  last_heartbeat_at: string | null;
  draining: boolean;
  /** What the last heartbeat said about receiving dispatches; absent in records written before the field existed. */
  receiving?: boolean;
  agent_version: string | null;
  cached_user: string[];
  cached_shared: string[];
  cache: Heartbeat['cache'] | null;
  download_bytes_per_second: number | null;
  /** The jobs the agent said it runs, as of the last heartbeat. */
  running_jobs: { job_id: string; epoch: number }[];
  /** Drained by an admin (POST /machines/{id}/drain): no new jobs until undrained. Absent on older documents. */
  admin_drained?: boolean;
  /** The agent's own report that the machine cannot run jobs (executor missing, disk full, ...). */
  unhealthy_reason?: string | null;
  /** SLOTS as the agent last reported it (may differ from registered_slots; the scheduler uses the smaller). */
  agent_slots?: number | null;
  /**
   * QUEUE_DEPTH as the agent last reported it: jobs it takes beyond `slots` (it downloads their LoRAs while its slots
   * are busy). The scheduler and the slot ledger give the machine up to slots + queue_depth jobs. Absent = 0.
   */
  queue_depth?: number;
  /** Admin cache orders not yet delivered in a heartbeat answer. */
  pending_evict?: CacheKey[];
  pending_prewarm?: PrewarmOrder[];
  /** LoRA keys the agent pins (PINNED_LORAS), as last reported. */
  pinned?: string[];
  /** Sizes and last use of the most recently used cached LoRAs, as last reported; null from agents that do not report them. */
  cache_entries?: CacheEntry[] | null;
  _etag?: string;
}

/** A pre-warm waiting for the next heartbeat answer; the download URL is minted then (it expires). */
export interface PrewarmOrder {
  kind: 'user' | 'shared';
  key: string;
  size_bytes: number;
  sha256: string;
  container: string;
  blob_name: string;
  /** A predictive hint (tick/prewarm-pass.ts), not an admin's order: the agent fetches it at low priority or declines it. */
  hint?: boolean;
}

/** Whether the scheduler may send this machine new work (liveness aside). */
export const acceptsWork = (m: Pick<MachineDoc, 'draining' | 'admin_drained' | 'unhealthy_reason'>): boolean =>
  !m.draining && !m.admin_drained && !m.unhealthy_reason;

/** A machine as first registered: no heartbeat yet, nothing cached, nothing running. */
export function newMachineDoc(req: { machine_id: string; pool: string; slots: number }, at: string): MachineDoc {
  return {
    id: req.machine_id,
    machine_id: req.machine_id,
    doc_type: 'machine',
    pool: req.pool,
    registered_slots: req.slots,
    slots: req.slots,
    token_version: 1,
    registered_at: at,
    updated_at: at,
    last_heartbeat_at: null,
    draining: false,
    receiving: true,
    agent_version: null,
    cached_user: [],
    cached_shared: [],
    cache: null,
    download_bytes_per_second: null,
    running_jobs: [],
  };
}

export const heartbeatMs = (m: Pick<MachineDoc, 'last_heartbeat_at'>): number | null =>
  m.last_heartbeat_at ? Date.parse(m.last_heartbeat_at) : null;

/** Live while the last beat is at most MACHINE_LIVENESS_SECONDS old. */
export function isLive(m: Pick<MachineDoc, 'last_heartbeat_at'>, nowMs: number, livenessSeconds: number): boolean {
  const at = heartbeatMs(m);
  return at !== null && nowMs - at <= livenessSeconds * 1000;
}

/** False only when the agent said it cannot receive its dispatches (session busy, transport down). */
export const isReceiving = (m: Pick<MachineDoc, 'receiving'>): boolean => m.receiving !== false;

export function toMachineView(m: MachineDoc, nowMs: number, livenessSeconds: number, runningJobs: number): MachineView {
  return {
    machine_id: m.machine_id,
    pool: m.pool,
    slots: m.slots,
    live: isLive(m, nowMs, livenessSeconds),
    draining: m.draining,
    receiving: isReceiving(m),
    last_heartbeat_at: m.last_heartbeat_at,
    running_jobs: runningJobs,
    cached_user_loras: m.cached_user.length,
    cached_shared_loras: m.cached_shared.length,
    cache: m.cache,
    registered_at: m.registered_at,
    admin_drained: m.admin_drained ?? false,
    unhealthy_reason: m.unhealthy_reason ?? null,
    agent_version: m.agent_version,
    registered_slots: m.registered_slots,
    agent_slots: m.agent_slots ?? null,
    queue_depth: m.queue_depth ?? 0,
  };
}

// The stored shape of a job (Cosmos `jobs`, partition key /tenant_id), its view on the wire, and the pure rules of its
// state machine. No I/O here: the store and the operations apply these rules with a compare-and-swap on the ETag.
//
//   pending ──tick──> assigned ──claim──> running ──succeeded──> succeeded
//      ^                 │                   │ ──failed (final)──> failed
//      │                 │                   │
//      └── lost / claim timeout / retryable failure (epoch+1; attempt+1 except for a claim timeout) ──┘
//   pending | assigned | running ──cancel──> cancelled;   failed | cancelled ──retry──> pending (new attempt budget)
//
// Times of an attempt: assigned_at (placement), claimed_at (the claim: `running`, the slot held), started_at (the
// agent's `started` report: LoRAs ready, the run begins), finished_at. A re-route (retry, hand-back, claim timeout)
// clears the first three.
//
// `epoch` is the fencing token: it moves on every time a job is handed to a machine or taken away from one, and a
// machine may only claim or report for the epoch it was given.
import { createHash } from 'node:crypto';
import type { JobOverflow, JobStatus, JobView, JobWait, LoraRequirement, RunnerUp } from '../../../contract/jobs.js';
import type { JobOutput } from '../../../contract/outputs.js';

export const ACTIVE_STATUSES = ['pending', 'assigned', 'running'] as const satisfies readonly JobStatus[];
/** Statuses that hold a machine slot. */
export const BUSY_STATUSES = ['assigned', 'running'] as const satisfies readonly JobStatus[];

export const isTerminal = (s: JobStatus): boolean => s === 'succeeded' || s === 'failed' || s === 'cancelled';

/** One LoRA a job needs, resolved at intake: the machine's cache key and the size, for the scheduler. */
export interface JobLora {
  kind: 'user' | 'shared';
  key: string;
  size_bytes: number;
}

export interface CacheOutcome {
  hit_loras: string[];
  missing_loras: string[];
  download_ms: number;
  bytes_downloaded: number;
}

export interface JobDoc {
  id: string;
  tenant_id: string;
  doc_type: 'job';
  status: JobStatus;
  service_required: string;
  pool: string;
  priority: number;
  payload: Record<string, unknown>;
  requirements: { loras: LoraRequirement[] };
  loras: JobLora[];
  /** Set when the job was submitted with an Idempotency-Key: a hash of the parsed request body. */
  request_hash: string | null;
  /** Fencing token. 0 at intake; +1 on every assignment and every time the job is taken back from a machine. */
  epoch: number;
  /** 1-based attempt number; never decreases (a user retry continues counting with a fresh budget). */
  attempt: number;
  /** The last attempt number this budget allows: losing attempt `attempt_limit` fails the job. */
  attempt_limit: number;
  machine_id: string | null;
  /** Machines an earlier attempt was lost on, for the scheduler's avoid scorer. */
  avoid_machines: string[];
  affinity_score: number | null;
  score_breakdown: Record<string, number> | null;
  policy: string | null;
  /** Set with the assignment (same CAS): the pass's best other machines. Absent on records older than this field. */
  runners_up?: RunnerUp[] | null;
  /** Set with the assignment: placed outside `pool` by cross-pool overflow, and why. Absent on older records. */
  overflow?: JobOverflow | null;
  /** Why the job waited, oldest first, bounded (tick/wait-notes.ts). Absent on records older than this field. */
  waits?: JobWait[];
  /** At assignment: what the machine held per its last heartbeat. Replaced by the agent's own report at start. */
  cache: { hit_loras: string[]; missing_loras: string[] };
  cache_outcome: CacheOutcome | null;
  /** Final error, or the reason of the last lost/failed attempt while a retry is pending. */
  error: string | null;
  result: unknown;
  /** Files delivered by the attempt that succeeded (epoch `outputs_epoch`), set in the same CAS as `succeeded`. */
  outputs?: JobOutput[];
  outputs_epoch?: number | null;
  /** The record's retention: after this the outputs are no longer listed or served (the blobs are deleted by a lifecycle rule). */
  outputs_expire_at?: string | null;
  /** The last failed attempt, so a duplicate `failed` report for it is recognised. */
  last_failure: { epoch: number; kind: LossKind; reason: string; retryable: boolean; at: string } | null;
  /** Assignments made (all attempts) and how many of them were re-routes after a lost or unclaimed dispatch. */
  assignments: number;
  redispatches: number;
  created_at: string;
  updated_at: string;
  assigned_at: string | null;
  /**
   * When the machine's claim was accepted (the CAS to `running`): from here the attempt holds its slot. Absent on
   * records written before this field, whose `started_at` is the claim time: read it through `claimedAt`.
   */
  claimed_at?: string | null;
  /**
   * When the run started: the agent's `started` report (its LoRAs are ready and the executor takes the job), null
   * until then. On records older than `claimed_at` this is the claim time.
   */
  started_at: string | null;
  finished_at: string | null;
  not_before: string | null;
  /** W3C traceparent of the job's `job.submit` span: every later span of the job joins this trace. */
  trace_parent?: string | null;
  _etag?: string;
}

export function toJobView(doc: JobDoc): JobView {
  return {
    job_id: doc.id,
    status: doc.status,
    service_required: doc.service_required,
    pool: doc.pool,
    priority: doc.priority,
    requirements: doc.requirements,
    machine_id: doc.machine_id,
    attempt: doc.attempt,
    epoch: doc.epoch,
    affinity_score: doc.affinity_score,
    score_breakdown: doc.score_breakdown,
    policy: doc.policy,
    runners_up: doc.runners_up ?? [],
    overflow: doc.overflow ?? null,
    waits: doc.waits ?? [],
    cache: {
      hit_loras: doc.cache_outcome?.hit_loras ?? doc.cache.hit_loras,
      missing_loras: doc.cache_outcome?.missing_loras ?? doc.cache.missing_loras,
    },
    error: doc.error,
    result: doc.result ?? null,
    outputs: outputsLive(doc, Date.now()) ? (doc.outputs ?? []) : [],
    outputs_expire_at: doc.outputs_expire_at ?? null,
    created_at: doc.created_at,
    assigned_at: doc.assigned_at,
    claimed_at: claimedAt(doc),
    started_at: doc.started_at,
    finished_at: doc.finished_at,
    not_before: doc.not_before,
  };
}

/**
 * When the attempt's claim was accepted. A record older than `claimed_at` kept the claim time in `started_at` (and a
 * new one never has `started_at` without `claimed_at`), so that is the fallback.
 */
export const claimedAt = (doc: { claimed_at?: string | null; started_at: string | null }): string | null =>
  doc.claimed_at ?? doc.started_at ?? null;

/**
 * Since when a busy (assigned/running) job holds its machine's slot: its claim, else its assignment. Not the run's
 * start: the slot is taken at the claim and stays taken while the LoRAs are fetched (NaN when neither is known).
 */
export const slotHeldSinceMs = (j: { assigned_at: string | null; claimed_at?: string | null; started_at: string | null }): number =>
  Date.parse(claimedAt(j) ?? j.assigned_at ?? '');

/**
 * The run's start, recorded by the first `started` report of the attempt (a resent one keeps it). A record claimed
 * before `claimed_at` existed holds the claim time in `started_at`: it moves to `claimed_at` and the start is now.
 */
export function startedTimes(d: JobDoc, at: string): Pick<JobDoc, 'claimed_at' | 'started_at'> {
  if (d.claimed_at === undefined) return { claimed_at: d.started_at ?? null, started_at: at };
  return { claimed_at: d.claimed_at, started_at: d.started_at ?? at };
}

/** A succeeded job's times as the learners read them (claimed_at is absent on records older than the field). */
export interface FinishedRow {
  service_required?: string | null;
  claimed_at?: string | null;
  started_at: string | null;
  finished_at: string | null;
}

/**
 * Seconds a finished job held its slot: claim → finish (the LoRA fetch between the claim and the run's start holds the
 * slot too, and a freed slot is what the scheduler plans with), or null when the times are missing or out of order.
 */
export function slotSeconds(r: FinishedRow): number | null {
  const claimed = claimedAt(r);
  if (!claimed || !r.finished_at) return null;
  const s = (Date.parse(r.finished_at) - Date.parse(claimed)) / 1000;
  return s >= 0 ? s : null;
}

/** Whether the job's recorded outputs are still within their retention. */
export const outputsLive = (doc: Pick<JobDoc, 'outputs_expire_at'>, nowMs: number): boolean =>
  !doc.outputs_expire_at || Date.parse(doc.outputs_expire_at) > nowMs;

const BASE32 = '0123456789abcdefghjkmnpqrstvwxyz';

/** The job id for (tenant, Idempotency-Key): the same pair always names the same job. */
export function idempotentJobId(tenantId: string, key: string): string {
  const digest = createHash('sha256').update(`lora-router/job\n${tenantId}\n${key}`).digest();
  let bits = 0;
  let value = 0;
  let out = '';
  for (const byte of digest) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5 && out.length < 26) {
      out += BASE32[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
    value &= (1 << bits) - 1;
    if (out.length === 26) break;
  }
  return `job_${out}`;
}

/** JSON with object keys sorted, so equal values hash equally whatever the key order on the wire. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
}

export const requestHash = (body: unknown): string => createHash('sha256').update(canonicalJson(body)).digest('hex');

/** Idempotency-Key header rules: 1-200 visible ASCII characters. */
export const IDEMPOTENCY_KEY_PATTERN = /^[\x21-\x7e]{1,200}$/;

/** Backoff before attempt n+1 after attempt n failed on its machine: base × 2^(n-1) seconds. */
export function retryDelaySeconds(baseSeconds: number, lostAttempt: number): number {
  return baseSeconds * 2 ** Math.max(0, lostAttempt - 1);
}

/**
 * Backoff before attempt n+1 after attempt n was lost with its machine (silent, or it forgot the job): none the first
 * time — the machine failed, not the job, and the lost machine is avoided — so the job is re-routed within the
 * liveness window plus one tick; then base × 2^(n-2) seconds (2 s, 4 s, ... by default) when losses repeat.
 */
export function lostMachineDelaySeconds(baseSeconds: number, lostAttempt: number): number {
  return lostAttempt <= 1 ? 0 : retryDelaySeconds(baseSeconds, lostAttempt - 1);
}

/** New work is refused once active jobs reach 90 % of the limit (rounded up): the smallest refused count. */
export function quotaThreshold(limit: number): number {
  return Math.max(1, Math.ceil((limit * 9) / 10));
}

export type LossKind = 'machine_lost' | 'orphaned' | 'agent_failure' | 'handed_back';

/**
 * The job after attempt `doc.attempt` was lost or failed on `doc.machine_id`: back to pending with the epoch moved on
 * (the old attempt can no longer claim or report) and a backoff (retryDelaySeconds for a failure the agent reported,
 * lostMachineDelaySeconds for a lost machine), or `failed` when the failure
 * is final or the budget is spent (the epoch stays: a duplicate report of that failure is then recognised). Pure.
 */
export function afterLostAttempt(
  doc: JobDoc,
  kind: LossKind,
  reason: string,
  nowMs: number,
  retryBaseSeconds: number,
  retryable = true,
): JobDoc {
  const at = new Date(nowMs).toISOString();
  const lostOn = doc.machine_id;
  const base: JobDoc = {
    ...doc,
    updated_at: at,
    last_failure: { epoch: doc.epoch, kind, reason, retryable, at },
  };
  if (!retryable || doc.attempt >= doc.attempt_limit) {
    const spent = retryable ? ` (attempt ${doc.attempt} of ${doc.attempt_limit}; no attempts left)` : '';
    return { ...base, status: 'failed', error: `${reason}${spent}`, finished_at: at, not_before: null };
  }
  const delay = kind === 'agent_failure' ? retryDelaySeconds(retryBaseSeconds, doc.attempt) : lostMachineDelaySeconds(retryBaseSeconds, doc.attempt);
  return {
    ...base,
    status: 'pending',
    epoch: doc.epoch + 1,
    machine_id: null,
    attempt: doc.attempt + 1,
    avoid_machines: lostOn && !doc.avoid_machines.includes(lostOn) ? [...doc.avoid_machines, lostOn] : doc.avoid_machines,
    error: `attempt ${doc.attempt} of ${doc.attempt_limit}: ${reason}`,
    not_before: new Date(nowMs + delay * 1000).toISOString(),
    redispatches: doc.redispatches + 1,
    assigned_at: null,
    claimed_at: null,
    started_at: null,
  };
}

/**
 * A job that is on no machine and has no outcome yet: how intake creates it and how a
 * user retry resets it (fresh arrays each call).
 */
export const unplaced = () =>
  ({
    machine_id: null,
    avoid_machines: [] as string[],
    affinity_score: null,
    score_breakdown: null,
    policy: null,
    runners_up: null,
    overflow: null,
    waits: [] as JobWait[],
    cache: { hit_loras: [] as string[], missing_loras: [] as string[] },
    cache_outcome: null,
    error: null,
    result: null,
    outputs: [] as JobOutput[],
    outputs_epoch: null,
    outputs_expire_at: null,
    assigned_at: null,
    claimed_at: null,
    started_at: null,
    finished_at: null,
    not_before: null,
  }) satisfies Partial<JobDoc>;

/**
 * The machine handed the job back because the machine itself cannot run it (executor missing, disk full, executor
 * backend down, agent draining): back to pending at once with the same attempt (none is spent: the job did nothing
 * wrong), epoch moved on, and the machine avoided. Pure.
 */
export function afterHandBack(doc: JobDoc, reason: string, nowMs: number): JobDoc {
  const at = new Date(nowMs).toISOString();
  return {
    ...reroutedSameAttempt(doc, at),
    last_failure: { epoch: doc.epoch, kind: 'handed_back', reason, retryable: true, at },
    error: `handed back by ${doc.machine_id ?? 'its machine'} (attempt ${doc.attempt} not spent): ${reason}`,
  };
}

/** Back to pending with the same attempt, epoch moved on, the machine it was on avoided from now on. */
function reroutedSameAttempt(doc: JobDoc, at: string): JobDoc {
  const lostOn = doc.machine_id;
  return {
    ...doc,
    status: 'pending',
    epoch: doc.epoch + 1,
    machine_id: null,
    avoid_machines: lostOn && !doc.avoid_machines.includes(lostOn) ? [...doc.avoid_machines, lostOn] : doc.avoid_machines,
    assigned_at: null,
    claimed_at: null,
    started_at: null,
    not_before: null,
    redispatches: doc.redispatches + 1,
    updated_at: at,
  };
}

/** An assigned job nobody claimed in time: re-route it, same attempt, epoch moved on. */
export function afterClaimTimeout(doc: JobDoc, nowMs: number): JobDoc {
  return reroutedSameAttempt(doc, new Date(nowMs).toISOString());
}

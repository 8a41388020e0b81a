// Rollup documents: the time dimension of GET /api/metrics at a cost that does not grow with the number of jobs.
//
// Every job that starts or ends, and every heartbeat whose cache counters moved, adds its numbers to a handful of bucket
// documents (Cosmos `events` container, which is partitioned by /job_id: each scope × resolution is one logical
// partition `~rollup|<scope>|<resolution>`, id = the bucket's start). Scopes: `fleet`, and `t:<tenant>` for the
// tenant's own jobs. Resolutions: `minute` and `hour`. So a job adds to ≤ 4 documents at start and ≤ 4 at its end, a
// heartbeat to ≤ 2, each with a compare-and-swap on the ETag; a read of a month at hourly steps is ≤ 720 point-range
// documents in one partition, whatever the job count (10k jobs/day or 10M). Minute buckets serve spans up to 48 h.
//
// Written after the job's own CAS succeeded (so once per transition); a crash between the two loses that job's
// contribution to the statistics, never the job.
import type { Container } from '@azure/cosmos';
import { isConflict, isPreconditionFailed } from '../sdk-errors.js';
import type { CacheState } from '../telemetry.js';
import { readItem } from '../point-read.js';

export type Resolution = 'minute' | 'hour';
export const RESOLUTION_MS: Record<Resolution, number> = { minute: 60_000, hour: 3_600_000 };

/** Upper bounds (seconds) of the start-latency histogram buckets; one more bucket holds everything above the last. */
export const LATENCY_BOUNDS_S = [0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 45, 60, 120, 300, 600, 1800] as const;
/** Upper bounds of the placement-score histogram buckets (scores of every policy fit: adr010 is 0..80). */
export const SCORE_BOUNDS = [-50, -10, -1, 0, 1, 5, 10, 20, 30, 40, 50, 60, 80, 100, 200] as const;
/** Per bucket, at most this many LoRAs are kept by name; the rest add to `~other` so a document stays small. */
export const MAX_LORAS_PER_BUCKET = 300;
export const CACHE_STATES: readonly CacheState[] = ['all_hits', 'some_misses', 'all_misses', 'no_loras'];

export interface MachineDelta {
  hits: number;
  misses: number;
  downloads: number;
  bytes_downloaded: number;
  evictions: number;
  thrash: number;
}

export interface RollupDoc {
  id: string;
  job_id: string;
  doc_type: 'rollup';
  scope: string;
  resolution: Resolution;
  bucket: string;
  /** Jobs that ended in this bucket, by outcome (succeeded | failed | retried). */
  finished: Record<string, number>;
  /** Jobs that started (the agent's `started` report) in this bucket, by cache state. */
  started: Record<string, number>;
  /** Per cache state: counts per LATENCY_BOUNDS_S bucket (+1 overflow) of submit → started. */
  latency: Record<string, number[]>;
  /** Counts per SCORE_BOUNDS bucket (+1 overflow) of the placement score of the jobs that started. */
  score: number[];
  /** Per required LoRA, as the agents reported at start. */
  lora_hits: number;
  lora_misses: number;
  /** Bytes the agents downloaded for the jobs that started here (the jobs' own reports). */
  job_bytes_downloaded: number;
  download_ms: number;
  loras: Record<string, { requests: number; bytes: number }>;
  /** Fleet scope only: heartbeat counter deltas (the machines' own counters). */
  machine: MachineDelta;
  updated_at: string;
  _etag?: string;
}

export const rollupPartition = (scope: string, res: Resolution): string => `~rollup|${scope}|${res}`;
export const tenantScope = (tenantId: string): string => `t:${tenantId}`;
export const FLEET_SCOPE = 'fleet';

export const bucketStart = (ms: number, res: Resolution): number => Math.floor(ms / RESOLUTION_MS[res]) * RESOLUTION_MS[res];

export function histogramIndex(bounds: readonly number[], v: number): number {
  const i = bounds.findIndex((b) => v <= b);
  return i === -1 ? bounds.length : i;
}

const zeros = (n: number): number[] => Array.from({ length: n }, () => 0);

export function emptyRollup(scope: string, res: Resolution, startMs: number): RollupDoc {
  const bucket = new Date(startMs).toISOString();
  return {
    id: bucket,
    job_id: rollupPartition(scope, res),
    doc_type: 'rollup',
    scope,
    resolution: res,
    bucket,
    finished: {},
    started: {},
    latency: Object.fromEntries(CACHE_STATES.map((s) => [s, zeros(LATENCY_BOUNDS_S.length + 1)])),
    score: zeros(SCORE_BOUNDS.length + 1),
    lora_hits: 0,
    lora_misses: 0,
    job_bytes_downloaded: 0,
    download_ms: 0,
    loras: {},
    machine: { hits: 0, misses: 0, downloads: 0, bytes_downloaded: 0, evictions: 0, thrash: 0 },
    updated_at: bucket,
  };
}

/** What one job's start adds. */
export interface StartSample {
  cacheState: CacheState;
  latencySeconds: number;
  score: number | null;
  hits: number;
  misses: number;
  bytesDownloaded: number;
  downloadMs: number;
  /** Required LoRAs with the bytes downloaded for each (0 for a hit; a miss's size otherwise). */
  loras: { key: string; bytes: number }[];
}

export function addStart(doc: RollupDoc, s: StartSample): void {
  doc.started[s.cacheState] = (doc.started[s.cacheState] ?? 0) + 1;
  const h = (doc.latency[s.cacheState] ??= zeros(LATENCY_BOUNDS_S.length + 1));
  h[histogramIndex(LATENCY_BOUNDS_S, s.latencySeconds)]!++;
  if (s.score !== null) doc.score[histogramIndex(SCORE_BOUNDS, s.score)]!++;
  doc.lora_hits += s.hits;
  doc.lora_misses += s.misses;
  doc.job_bytes_downloaded += s.bytesDownloaded;
  doc.download_ms += s.downloadMs;
  for (const l of s.loras) {
    const key = doc.loras[l.key] || Object.keys(doc.loras).length < MAX_LORAS_PER_BUCKET ? l.key : '~other';
    const e = (doc.loras[key] ??= { requests: 0, bytes: 0 });
    e.requests++;
    e.bytes += l.bytes;
  }
}

export function addFinished(doc: RollupDoc, outcome: string): void {
  doc.finished[outcome] = (doc.finished[outcome] ?? 0) + 1;
}

export function addMachineDelta(doc: RollupDoc, d: MachineDelta): void {
  for (const k of Object.keys(doc.machine) as (keyof MachineDelta)[]) doc.machine[k] += d[k];
}

const readRollup = (events: Container, partition: string, id: string): Promise<RollupDoc | null> => readItem<RollupDoc>(events, id, partition);

/** Applies `change` to the bucket document holding `atMs` in every scope × resolution given, each with a CAS. */
export async function addToRollups(
  events: Container,
  scopes: readonly string[],
  atMs: number,
  change: (doc: RollupDoc) => void,
  resolutions: readonly Resolution[] = ['minute', 'hour'],
): Promise<void> {
  for (const scope of scopes) {
    for (const res of resolutions) {
      const partition = rollupPartition(scope, res);
      const id = new Date(bucketStart(atMs, res)).toISOString();
      for (let attempt = 0; ; attempt++) {
        if (attempt >= 16) throw new Error(`rollup ${partition}/${id}: too much contention`);
        const existing = await readRollup(events, partition, id);
        const doc = existing ? structuredClone(existing) : emptyRollup(scope, res, bucketStart(atMs, res));
        change(doc);
        doc.updated_at = new Date().toISOString();
        try {
          if (existing) await events.item(id, partition).replace(doc, { accessCondition: { type: 'IfMatch', condition: existing._etag! } });
          else await events.items.create(doc);
          break;
        } catch (err) {
          if (!isPreconditionFailed(err) && !isConflict(err)) throw err;
        }
      }
    }
  }
}

/** Rollup documents of one scope and resolution with bucket start in [fromMs, toMs). One partition, one range query. */
export async function readRollups(events: Container, scope: string, res: Resolution, fromMs: number, toMs: number): Promise<RollupDoc[]> {
  const { resources } = await events.items
    .query<RollupDoc>(
      {
        query: 'SELECT * FROM c WHERE c.job_id = @p AND c.bucket >= @from AND c.bucket < @to',
        parameters: [
          { name: '@p', value: rollupPartition(scope, res) },
          { name: '@from', value: new Date(bucketStart(fromMs, res)).toISOString() },
          { name: '@to', value: new Date(toMs).toISOString() },
        ],
      },
      { partitionKey: rollupPartition(scope, res) },
    )
    .fetchAll();
  return resources.sort((a, b) => (a.bucket < b.bucket ? -1 : 1));
}

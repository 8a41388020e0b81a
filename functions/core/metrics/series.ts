// The time series of GET /api/metrics?since=&step=, folded from rollup documents (rollups.ts): a read is at most
// MAX_POINTS × (step ÷ resolution) documents of one partition, independent of how many jobs ran.
import { badRequest } from '../errors.js';
import type { CoreDeps } from '../deps.js';
import { isLive } from '../machines/model.js';
import { listMachineDocs } from '../machines/store.js';
import {
  CACHE_STATES,
  FLEET_SCOPE,
  LATENCY_BOUNDS_S,
  readRollups,
  RESOLUTION_MS,
  SCORE_BOUNDS,
  tenantScope,
  type Resolution,
  type RollupDoc,
} from './rollups.js';

/** ADR-010's blob egress target. */
export const EGRESS_TARGET_BYTES_PER_DAY = 100 * 1000 ** 3;
export const MAX_POINTS = 2000;
/** Minute buckets are read for spans up to this long; longer spans need a step of whole hours. */
export const MAX_MINUTE_SPAN_MS = 48 * 3_600_000;
const UNIT_MS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 7 * 86_400_000 };

/** `7d`, `90m`, `1h`, `3600` (seconds). */
export function parseDuration(raw: string, what: string): number {
  const m = /^(\d{1,7})([smhdw]?)$/.exec(raw.trim());
  if (!m) throw badRequest(`${what} must be a duration such as 30m, 1h, 7d (or whole seconds), got "${raw.slice(0, 40)}"`);
  const ms = Number(m[1]) * (UNIT_MS[m[2] || 's'] ?? 1000);
  if (ms <= 0) throw badRequest(`${what} must be positive`);
  return ms;
}

/** `since` is a duration back from now or an ISO time. */
export function parseSince(raw: string | null, nowMs: number): number {
  if (raw === null || raw === '') return nowMs - 24 * 3_600_000;
  if (/^\d{4}-\d{2}-\d{2}T/.test(raw)) {
    const t = Date.parse(raw);
    if (!Number.isFinite(t)) throw badRequest(`since is not a valid ISO time: "${raw.slice(0, 40)}"`);
    return t;
  }
  return nowMs - parseDuration(raw, 'since');
}

export interface SeriesQuery {
  sinceMs: number;
  untilMs: number;
  stepMs: number;
  top: number;
}

export function seriesQuery(query: URLSearchParams, nowMs: number): SeriesQuery & { resolution: Resolution } {
  const sinceMs = parseSince(query.get('since'), nowMs);
  if (sinceMs >= nowMs) throw badRequest('since must be in the past');
  if (nowMs - sinceMs > 92 * 86_400_000) throw badRequest('since may reach back at most 92 days');
  const span = nowMs - sinceMs;
  const stepRaw = query.get('step');
  const stepMs = stepRaw ? parseDuration(stepRaw, 'step') : span > MAX_MINUTE_SPAN_MS ? 86_400_000 : span > 6 * 3_600_000 ? 3_600_000 : 60_000;
  const resolution: Resolution = stepMs % RESOLUTION_MS.hour === 0 ? 'hour' : 'minute';
  if (stepMs % RESOLUTION_MS.minute !== 0) throw badRequest('step must be whole minutes (e.g. 1m, 5m, 1h, 1d)');
  if (resolution === 'minute' && span > MAX_MINUTE_SPAN_MS) throw badRequest('a step under 1h covers at most 48h; use step=1h or more for longer spans');
  if (span / stepMs > MAX_POINTS) throw badRequest(`since/step gives more than ${MAX_POINTS} points; use a larger step`);
  const topRaw = query.get('top');
  const top = topRaw === null ? 10 : Number(topRaw);
  if (!Number.isInteger(top) || top < 1 || top > 100) throw badRequest('top must be an integer between 1 and 100');
  return { sinceMs, untilMs: nowMs, stepMs, top, resolution };
}

/** Quantile from bucket counts (linear inside the bucket; the overflow bucket reports the last bound). */
export function histogramQuantile(bounds: readonly number[], counts: readonly number[], q: number): number | null {
  const total = counts.reduce((a, b) => a + b, 0);
  if (total === 0) return null;
  const rank = q * total;
  let cum = 0;
  for (let i = 0; i < counts.length; i++) {
    const c = counts[i]!;
    if (c > 0 && cum + c >= rank) {
      if (i >= bounds.length) return bounds[bounds.length - 1]!;
      const lo = i === 0 ? 0 : bounds[i - 1]!;
      const hi = bounds[i]!;
      return lo + ((rank - cum) / c) * (hi - lo);
    }
    cum += c;
  }
  return bounds[bounds.length - 1]!;
}

const addInto = (into: number[], from: readonly number[] | undefined) => from?.forEach((v, i) => (into[i] = (into[i] ?? 0) + v));
const ratio = (a: number, b: number) => (b > 0 ? a / b : null);

export interface LatencyPoint {
  count: number;
  p50_s: number | null;
  p95_s: number | null;
}

export interface MetricsSeries {
  scope: 'fleet' | 'tenant';
  since: string;
  until: string;
  step_seconds: number;
  resolution: Resolution;
  hit_rate: { t: string; hits: number; misses: number; hit_rate: number | null }[];
  start_latency: ({ t: string } & Record<string, LatencyPoint | string>)[];
  jobs: { t: string; started: number; succeeded: number; failed: number; retried: number }[];
  score_histogram: { le: number | null; count: number }[];
  top_loras: { by_requests: { key: string; requests: number; bytes: number }[]; by_bytes: { key: string; requests: number; bytes: number }[] };
  evictions: { t: string; evictions: number; thrash: number; downloads: number; bytes_downloaded: number }[];
  egress_per_day: { day: string; bytes: number; target_bytes: number; within_target: boolean }[];
  machines: {
    machine_id: string;
    pool: string;
    live: boolean;
    used_bytes: number;
    budget_bytes: number;
    hits: number;
    misses: number;
    hit_rate: number | null;
    bytes_downloaded: number;
    evictions: number;
    thrash: number;
  }[];
  totals: {
    hits: number;
    misses: number;
    hit_rate: number | null;
    bytes_downloaded: number;
    downloads: number;
    evictions: number;
    thrash: number;
    started: number;
    /** Started jobs whose placement scored above 0 (ADR-010: 70 %). */
    scored_above_zero: number;
    /** Submit → start over the whole period, per cache state (from the merged histograms). */
    start_latency: Record<string, LatencyPoint>;
  };
}

/** Folds rollups into series. `tenantId` null = the fleet view (admins); else that tenant's own jobs only. */
export async function computeSeries(deps: CoreDeps, q: SeriesQuery & { resolution: Resolution }, tenantId: string | null): Promise<MetricsSeries> {
  const scope = tenantId === null ? FLEET_SCOPE : tenantScope(tenantId);
  const docs = await readRollups(deps.events, scope, q.resolution, q.sinceMs, q.untilMs);
  const firstMs = Math.floor(q.sinceMs / q.stepMs) * q.stepMs;
  const points = Math.ceil((q.untilMs - firstMs) / q.stepMs);
  const bins: RollupDoc[][] = Array.from({ length: points }, () => []);
  for (const d of docs) {
    const i = Math.floor((Date.parse(d.bucket) - firstMs) / q.stepMs);
    if (i >= 0 && i < points) bins[i]!.push(d);
  }
  const tOf = (i: number) => new Date(firstMs + i * q.stepMs).toISOString();
  const sum = (ds: RollupDoc[], f: (d: RollupDoc) => number) => ds.reduce((a, d) => a + f(d), 0);

  const score = new Array<number>(SCORE_BOUNDS.length + 1).fill(0);
  const loras = new Map<string, { requests: number; bytes: number }>();
  const egress = new Map<string, number>();
  for (const d of docs) {
    addInto(score, d.score);
    for (const [k, v] of Object.entries(d.loras)) {
      const e = loras.get(k) ?? { requests: 0, bytes: 0 };
      e.requests += v.requests;
      e.bytes += v.bytes;
      loras.set(k, e);
    }
    const day = d.bucket.slice(0, 10);
    // Fleet: what the machines say they downloaded; tenant: what its jobs' starts reported.
    egress.set(day, (egress.get(day) ?? 0) + (tenantId === null ? d.machine.bytes_downloaded : d.job_bytes_downloaded));
  }
  const loraList = [...loras].map(([key, v]) => ({ key, ...v }));

  const fleetMachines =
    tenantId === null
      ? (await listMachineDocs(deps.machines))
          .sort((a, b) => (a.machine_id < b.machine_id ? -1 : 1))
          .map((m) => {
            const c = m.cache?.counters;
            return {
              machine_id: m.machine_id,
              pool: m.pool,
              live: isLive(m, deps.now(), deps.config.machineLivenessSeconds),
              used_bytes: m.cache?.used_bytes ?? 0,
              budget_bytes: m.cache?.budget_bytes ?? 0,
              hits: c?.hits ?? 0,
              misses: c?.misses ?? 0,
              hit_rate: ratio(c?.hits ?? 0, (c?.hits ?? 0) + (c?.misses ?? 0)),
              bytes_downloaded: c?.bytes_downloaded ?? 0,
              evictions: c?.evictions ?? 0,
              thrash: c?.thrash ?? 0,
            };
          })
      : [];

  const hits = sum(docs, (d) => d.lora_hits);
  const misses = sum(docs, (d) => d.lora_misses);
  return {
    scope: tenantId === null ? 'fleet' : 'tenant',
    since: new Date(q.sinceMs).toISOString(),
    until: new Date(q.untilMs).toISOString(),
    step_seconds: q.stepMs / 1000,
    resolution: q.resolution,
    hit_rate: bins.map((ds, i) => {
      const h = sum(ds, (d) => d.lora_hits);
      const m = sum(ds, (d) => d.lora_misses);
      return { t: tOf(i), hits: h, misses: m, hit_rate: ratio(h, h + m) };
    }),
    start_latency: bins.map((ds, i) => {
      const point: { t: string } & Record<string, LatencyPoint | string> = { t: tOf(i) };
      for (const s of CACHE_STATES) {
        const counts = new Array<number>(LATENCY_BOUNDS_S.length + 1).fill(0);
        for (const d of ds) addInto(counts, d.latency[s]);
        point[s] = {
          count: counts.reduce((a, b) => a + b, 0),
          p50_s: histogramQuantile(LATENCY_BOUNDS_S, counts, 0.5),
          p95_s: histogramQuantile(LATENCY_BOUNDS_S, counts, 0.95),
        };
      }
      return point;
    }),
    jobs: bins.map((ds, i) => ({
      t: tOf(i),
      started: sum(ds, (d) => Object.values(d.started).reduce((a, b) => a + b, 0)),
      succeeded: sum(ds, (d) => d.finished.succeeded ?? 0),
      failed: sum(ds, (d) => d.finished.failed ?? 0),
      retried: sum(ds, (d) => d.finished.retried ?? 0),
    })),
    score_histogram: score.map((count, i) => ({ le: i < SCORE_BOUNDS.length ? SCORE_BOUNDS[i]! : null, count })),
    top_loras: {
      by_requests: [...loraList].sort((a, b) => b.requests - a.requests || b.bytes - a.bytes).slice(0, q.top),
      by_bytes: [...loraList].sort((a, b) => b.bytes - a.bytes || b.requests - a.requests).slice(0, q.top),
    },
    evictions: bins.map((ds, i) => ({
      t: tOf(i),
      evictions: sum(ds, (d) => d.machine.evictions),
      thrash: sum(ds, (d) => d.machine.thrash),
      downloads: sum(ds, (d) => d.machine.downloads),
      bytes_downloaded: sum(ds, (d) => (tenantId === null ? d.machine.bytes_downloaded : d.job_bytes_downloaded)),
    })),
    egress_per_day: [...egress]
      .sort(([a], [b]) => (a < b ? -1 : 1))
      .map(([day, bytes]) => ({ day, bytes, target_bytes: EGRESS_TARGET_BYTES_PER_DAY, within_target: bytes < EGRESS_TARGET_BYTES_PER_DAY })),
    machines: fleetMachines,
    totals: {
      hits,
      misses,
      hit_rate: ratio(hits, hits + misses),
      bytes_downloaded: sum(docs, (d) => (tenantId === null ? d.machine.bytes_downloaded : d.job_bytes_downloaded)),
      downloads: sum(docs, (d) => d.machine.downloads),
      evictions: sum(docs, (d) => d.machine.evictions),
      thrash: sum(docs, (d) => d.machine.thrash),
      start_latency: Object.fromEntries(
        CACHE_STATES.map((st) => {
          const counts = new Array<number>(LATENCY_BOUNDS_S.length + 1).fill(0);
          for (const d of docs) addInto(counts, d.latency[st]);
          const point: LatencyPoint = {
            count: counts.reduce((a, b) => a + b, 0),
            p50_s: histogramQuantile(LATENCY_BOUNDS_S, counts, 0.5),
            p95_s: histogramQuantile(LATENCY_BOUNDS_S, counts, 0.95),
          };
          return [st, point];
        }),
      ),
      scored_above_zero: score.reduce((a, c, i) => a + (i >= SCORE_BOUNDS.indexOf(0) + 1 ? c : 0), 0),
      started: sum(docs, (d) => Object.values(d.started).reduce((a, b) => a + b, 0)),
    },
  };
}

/** The series as plain lines (name → points; a step without data has no point): what a simple line chart needs. */
export function flatSeries(s: MetricsSeries): Record<string, { at: string; value: number }[]> {
  const line = <T extends { t: string }>(rows: T[], f: (r: T) => number | null | undefined) =>
    rows.flatMap((r) => {
      const v = f(r);
      return typeof v === 'number' && Number.isFinite(v) ? [{ at: r.t, value: v }] : [];
    });
  const lat = (state: string) => (r: { t: string } & Record<string, unknown>) => {
    const p = r[state] as LatencyPoint | undefined;
    return p && p.count > 0 ? p.p95_s : null;
  };
  return {
    hit_rate: line(s.hit_rate, (r) => r.hit_rate),
    start_latency_p95_all_hits_s: line(s.start_latency, lat('all_hits')),
    start_latency_p95_all_misses_s: line(s.start_latency, lat('all_misses')),
    jobs_started: line(s.jobs, (r) => r.started),
    evictions: line(s.evictions, (r) => r.evictions),
    thrash: line(s.evictions, (r) => r.thrash),
    bytes_downloaded: line(s.evictions, (r) => r.bytes_downloaded),
  };
}

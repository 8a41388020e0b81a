// The pure parts of observability: rollup arithmetic, histogram quantiles, query validation, and the weekly report.
import { describe, expect, it } from 'vitest';
import { addStart, emptyRollup, histogramIndex, LATENCY_BOUNDS_S } from '../../functions/core/metrics/rollups.js';
import { histogramQuantile, parseDuration, seriesQuery, type MetricsSeries } from '../../functions/core/metrics/series.js';
import { cacheStateOf } from '../../functions/core/telemetry.js';
import { opportunities, renderHtml, renderMarkdown, summaryRows } from '../../cli/report/render.js';

describe('rollups and quantiles', () => {
  it('puts a start in its cache-state bucket and its latency bin, and caps nothing it should not', () => {
    const d = emptyRollup('fleet', 'minute', Date.parse('2026-11-30T08:00:00Z'));
    addStart(d, { cacheState: cacheStateOf(2, 0), latencySeconds: 4, score: 20, hits: 2, misses: 0, bytesDownloaded: 0, downloadMs: 0, loras: [{ key: 'a', bytes: 0 }, { key: 'b', bytes: 0 }] });
    addStart(d, { cacheState: cacheStateOf(0, 1), latencySeconds: 40, score: 0, hits: 0, misses: 1, bytesDownloaded: 500, downloadMs: 30, loras: [{ key: 'a', bytes: 500 }] });
    expect(d.started).toEqual({ all_hits: 1, all_misses: 1 });
    expect(d.latency.all_hits![histogramIndex(LATENCY_BOUNDS_S, 4)]).toBe(1);
    expect(d.loras).toEqual({ a: { requests: 2, bytes: 500 }, b: { requests: 1, bytes: 0 } });
    expect(cacheStateOf(1, 1)).toBe('some_misses');
    expect(cacheStateOf(0, 0)).toBe('no_loras');
  });

  it('estimates quantiles inside the bucket and reports null for no data', () => {
    const bounds = [1, 2, 4];
    expect(histogramQuantile(bounds, [0, 0, 0, 0], 0.5)).toBeNull();
    expect(histogramQuantile(bounds, [0, 10, 0, 0], 0.5)).toBeCloseTo(1.5);
    expect(histogramQuantile(bounds, [5, 0, 0, 5], 0.95)).toBe(4);
  });

  it('validates since/step with messages that name the problem', () => {
    const now = Date.parse('2026-11-30T09:00:00Z');
    const q = (s: string) => seriesQuery(new URLSearchParams(s), now);
    expect(q('since=7d')).toMatchObject({ resolution: 'hour', stepMs: 86_400_000 });
    expect(q('since=1h&step=5m')).toMatchObject({ resolution: 'minute', stepMs: 300_000, sinceMs: now - 3_600_000 });
    expect(() => q('since=3d&step=1m')).toThrow(/48h/);
    expect(() => q('since=abc')).toThrow(/since must be a duration/);
    expect(() => q('since=1h&step=10s')).toThrow(/whole minutes/);
    expect(() => parseDuration('0m', 'step')).toThrow(/positive/);
  });
});

function series(over: Partial<MetricsSeries> = {}): MetricsSeries {
  const t = ['2026-11-30T08:00:00.000Z', '2026-11-30T08:01:00.000Z'];
  const lat = (n: number, p95: number | null) => ({ count: n, p50_s: p95, p95_s: p95 });
  return {
    scope: 'fleet',
    since: t[0]!,
    until: '2026-11-30T08:02:00.000Z',
    step_seconds: 60,
    resolution: 'minute',
    hit_rate: [{ t: t[0]!, hits: 1, misses: 3, hit_rate: 0.25 }, { t: t[1]!, hits: 1, misses: 1, hit_rate: 0.5 }],
    start_latency: t.map((x) => ({ t: x, all_hits: lat(1, 12), some_misses: lat(0, null), all_misses: lat(2, 40), no_loras: lat(0, null) })),
    jobs: t.map((x) => ({ t: x, started: 3, succeeded: 3, failed: 0, retried: 0 })),
    score_histogram: [{ le: 0, count: 4 }, { le: 10, count: 2 }, { le: null, count: 0 }],
    top_loras: { by_requests: [{ key: 'lora_x', requests: 4, bytes: 300 }], by_bytes: [{ key: 'lora_x', requests: 4, bytes: 300 }] },
    evictions: t.map((x) => ({ t: x, evictions: 2, thrash: 1, downloads: 2, bytes_downloaded: 150 })),
    egress_per_day: [{ day: '2026-11-30', bytes: 300, target_bytes: 100e9, within_target: true }],
    machines: [
      { machine_id: 'gpu-1', pool: 'standard', live: true, used_bytes: 90, budget_bytes: 100, hits: 2, misses: 2, hit_rate: 0.5, bytes_downloaded: 200, evictions: 4, thrash: 2 },
      { machine_id: 'gpu-2', pool: 'standard', live: true, used_bytes: 10, budget_bytes: 100, hits: 0, misses: 2, hit_rate: 0, bytes_downloaded: 100, evictions: 0, thrash: 0 },
    ],
    totals: {
      hits: 2, misses: 4, hit_rate: 2 / 6, bytes_downloaded: 300, downloads: 4, evictions: 4, thrash: 2, started: 6, scored_above_zero: 2,
      start_latency: { all_hits: lat(2, 12), some_misses: lat(0, null), all_misses: lat(4, 40), no_loras: lat(0, null) },
    },
    ...over,
  };
}

describe('the weekly report', () => {
  it('writes Markdown with the ADR targets, SVG charts and three opportunities, biggest first', () => {
    const { text, charts } = renderMarkdown(series(), [{ pool: 'standard', pending_jobs: 9, slots_total: 2, machines_live: 2 }], 'r-charts');
    const links = [...text.matchAll(/!\[[^\]]+\]\(r-charts\/([a-z-]+\.svg)\)/g)].map((m) => m[1]);
    expect(links.length).toBeGreaterThanOrEqual(2);
    for (const c of charts) {
      expect(c.svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
      expect(c.svg.trimEnd().endsWith('</svg>')).toBe(true);
    }
    expect(charts.find((c) => c.file === 'hit-rate.svg')!.svg).toMatch(/<path d="M[\d.]+,[\d.]+ L[\d.]+,[\d.]+"/);
    const ops = opportunities(series(), [{ pool: 'standard', pending_jobs: 9, slots_total: 2, machines_live: 2 }]);
    expect(ops.slice(0, 3).map((o) => o.text.match(/^\*\*([^:*]+)/)![1])).toEqual(['Backlog in pool standard', 'Thrashing', 'Machines that never hit']);
    expect(text).toContain('## The three biggest opportunities');
    expect(text).toMatch(/\| Cache hit rate \| 33\.3% \| ≥ 60% \| \*\*missed\*\* \|/);
    expect(summaryRows(series()).find((r) => r[0].startsWith('Start latency, cache hit'))![3]).toBe('**missed**');
  });

  it('says so when there is nothing to improve, and renders HTML with the charts inline', () => {
    const calm = series({
      machines: [],
      totals: {
        hits: 10, misses: 0, hit_rate: 1, bytes_downloaded: 0, downloads: 0, evictions: 0, thrash: 0, started: 10, scored_above_zero: 10,
        start_latency: { all_hits: { count: 10, p50_s: 1, p95_s: 2 } },
      },
      start_latency: [{ t: '2026-11-30T08:00:00.000Z', all_hits: { count: 10, p50_s: 1, p95_s: 2 } }],
      egress_per_day: [],
    });
    expect(opportunities(calm, [])).toEqual([]);
    expect(renderMarkdown(calm, [], 'c').text).toContain('No target missed');
    const html = renderHtml(calm, []);
    expect(html.match(/<svg /g)!.length).toBe(5);
    expect(html).toContain('<table');
  });
});

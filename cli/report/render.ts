// The weekly report (ADR-010 Phase 5): the period's numbers against the ADR's targets, SVG charts, and the three
// biggest opportunities. Pure: GET /api/metrics (+ /pools) in, Markdown or HTML and SVG files out.
import { formatBytes } from '../../contract/bytes.js';
import type { MetricsSeries } from '../../functions/core/metrics/series.js';
import { barChart, lineChart } from './svg.js';

export const TARGETS = {
  hitRate: 0.6,
  hitStartP95Seconds: 10,
  scoredAboveZero: 0.7,
  evictionRate: 0.1,
  egressBytesPerDay: 100 * 1000 ** 3,
} as const;

export interface PoolLine {
  pool: string;
  pending_jobs: number;
  slots_total: number;
  machines_live: number;
}

export interface Chart {
  file: string;
  title: string;
  svg: string;
}

export interface Opportunity {
  weight: number;
  text: string;
}

const pct = (v: number | null) => (v === null ? 'n/a' : `${(v * 100).toFixed(1)}%`);
const secs = (v: number | null) => (v === null ? 'n/a' : `${v.toFixed(1)} s`);
const label = (iso: string, stepSeconds: number) => (stepSeconds >= 86_400 ? iso.slice(5, 10) : stepSeconds >= 3600 ? iso.slice(5, 13).replace('T', ' ') + 'h' : iso.slice(11, 16));
type Lat = { count: number; p50_s: number | null; p95_s: number | null };

/** One cache state's submit → start over the whole period (the API merges the buckets' histograms). */
function periodLatency(s: MetricsSeries, state: string): { count: number; p50: number | null; p95: number | null } {
  const l = s.totals.start_latency?.[state];
  return { count: l?.count ?? 0, p50: l?.p50_s ?? null, p95: l?.p95_s ?? null };
}

export function opportunities(s: MetricsSeries, pools: PoolLine[]): Opportunity[] {
  const out: Opportunity[] = [];
  const t = s.totals;
  if (t.thrash > 0) {
    const top = s.top_loras.by_bytes.slice(0, 3).map((l) => `${l.key} (${formatBytes(l.bytes)} over ${l.requests} requests)`);
    out.push({
      weight: 3 + t.thrash / Math.max(1, t.downloads),
      text: `**Thrashing:** ${t.thrash} LoRA(s) were downloaded again soon after being evicted (${pct(t.thrash / Math.max(1, t.downloads))} of ${t.downloads} downloads). The heaviest: ${top.join(', ') || 'n/a'}. Raise the cache budget on the busiest machines, or pin these LoRAs.`,
    });
  }
  const neverHit = s.machines.filter((m) => m.misses > 0 && m.hits === 0);
  if (neverHit.length) {
    out.push({
      weight: 2 + neverHit.length,
      text: `**Machines that never hit:** ${neverHit.map((m) => `${m.machine_id} (${m.misses} misses, ${formatBytes(m.bytes_downloaded)} downloaded)`).join(', ')}. Check their budget (${neverHit.map((m) => formatBytes(m.budget_bytes)).join(', ')}) and whether the router can see their inventory (heartbeats).`,
    });
  }
  for (const p of pools.filter((p) => p.pending_jobs > p.slots_total)) {
    out.push({
      weight: 2 + p.pending_jobs / Math.max(1, p.slots_total),
      text: `**Backlog in pool ${p.pool}:** ${p.pending_jobs} jobs pending for ${p.slots_total} slot(s) on ${p.machines_live} live machine(s). Add machines to the pool.`,
    });
  }
  if (t.hit_rate !== null && t.hit_rate < TARGETS.hitRate) {
    out.push({
      weight: 1 + (TARGETS.hitRate - t.hit_rate) * 5,
      text: `**Hit rate ${pct(t.hit_rate)} is below the ADR's ${pct(TARGETS.hitRate)}.** The most requested LoRAs: ${s.top_loras.by_requests.slice(0, 3).map((l) => `${l.key} (${l.requests})`).join(', ') || 'n/a'}; give them more cache room or turn up the delay rule (SCHEDULER_WEIGHTS.delay).`,
    });
  }
  const hitLat = periodLatency(s, 'all_hits');
  if (hitLat.p95 !== null && hitLat.p95 > TARGETS.hitStartP95Seconds) {
    out.push({ weight: 1 + hitLat.p95 / TARGETS.hitStartP95Seconds, text: `**Cache-hit jobs start slowly:** p95 up to ${secs(hitLat.p95)} (target < ${TARGETS.hitStartP95Seconds} s): the wait is queueing, not downloads; add slots.` });
  }
  const overEgress = s.egress_per_day.filter((d) => d.bytes >= TARGETS.egressBytesPerDay);
  if (overEgress.length) out.push({ weight: 5, text: `**Egress over 100 GB/day** on ${overEgress.map((d) => `${d.day} (${formatBytes(d.bytes)})`).join(', ')}.` });
  const evictionRate = t.downloads > 0 ? t.evictions / t.downloads : null;
  if (evictionRate !== null && evictionRate > TARGETS.evictionRate) {
    out.push({ weight: 1 + evictionRate, text: `**Eviction rate ${pct(evictionRate)} of downloads** (target < ${pct(TARGETS.evictionRate)}): the working set does not fit the budgets; the top LoRAs by bytes are ${s.top_loras.by_bytes.slice(0, 3).map((l) => l.key).join(', ') || 'n/a'}.` });
  }
  return out.sort((a, b) => b.weight - a.weight);
}

export function charts(s: MetricsSeries): Chart[] {
  const xs = s.hit_rate.map((p) => label(p.t, s.step_seconds));
  const lat = (state: string, q: 'p50_s' | 'p95_s') => s.start_latency.map((p) => ((p[state] as Lat | undefined)?.[q] ?? null));
  return [
    { file: 'hit-rate.svg', title: 'Cache hit rate', svg: lineChart('Cache hit rate (per required LoRA)', 'hit rate', xs, [{ name: 'hit rate', values: s.hit_rate.map((p) => p.hit_rate) }], { yMax: 1, target: TARGETS.hitRate }) },
    {
      file: 'start-latency.svg',
      title: 'Start latency by cache state',
      svg: lineChart('Submit → start, p95 by cache state', 'seconds', xs, [
        { name: 'all hits p95', values: lat('all_hits', 'p95_s') },
        { name: 'some misses p95', values: lat('some_misses', 'p95_s') },
        { name: 'all misses p95', values: lat('all_misses', 'p95_s') },
      ], { target: TARGETS.hitStartP95Seconds }),
    },
    {
      file: 'scores.svg',
      title: 'Placement score distribution',
      svg: barChart('Placement score distribution', 'jobs', s.score_histogram.map((b, i, all) => (b.le === null ? `>${all[i - 1]?.le}` : `≤${b.le}`)), s.score_histogram.map((b) => b.count)),
    },
    { file: 'evictions.svg', title: 'Evictions and thrash', svg: lineChart('Evictions and thrash', 'LoRAs', xs, [{ name: 'evictions', values: s.evictions.map((p) => p.evictions) }, { name: 'thrash', values: s.evictions.map((p) => p.thrash) }]) },
    {
      file: 'egress.svg',
      title: 'Egress per day',
      svg: barChart('Blob egress per day (GB) vs the 100 GB target', 'GB', s.egress_per_day.map((d) => d.day.slice(5)), s.egress_per_day.map((d) => d.bytes / 1000 ** 3), { target: 100 }),
    },
  ];
}

export function summaryRows(s: MetricsSeries): [string, string, string, string][] {
  const t = s.totals;
  const hitLat = periodLatency(s, 'all_hits');
  const missLat = periodLatency(s, 'all_misses');
  const scored = t.started > 0 ? t.scored_above_zero / t.started : null;
  const evictionRate = t.downloads > 0 ? t.evictions / t.downloads : null;
  const maxEgress = Math.max(0, ...s.egress_per_day.map((d) => d.bytes));
  const ok = (b: boolean | null) => (b === null ? '—' : b ? 'met' : '**missed**');
  return [
    ['Cache hit rate', pct(t.hit_rate), '≥ 60%', ok(t.hit_rate === null ? null : t.hit_rate >= TARGETS.hitRate)],
    ['Start latency, cache hit (p50 / p95)', `${secs(hitLat.p50)} / ${secs(hitLat.p95)} (${hitLat.count} jobs)`, '< 10 s', ok(hitLat.p95 === null ? null : hitLat.p95 < TARGETS.hitStartP95Seconds)],
    ['Start latency, cache miss (p50 / p95)', `${secs(missLat.p50)} / ${secs(missLat.p95)} (${missLat.count} jobs)`, 'unchanged', '—'],
    ['Jobs with placement score > 0', pct(scored), '≥ 70%', ok(scored === null ? null : scored >= TARGETS.scoredAboveZero)],
    ['Evictions per download', `${pct(evictionRate)} (${t.evictions} / ${t.downloads})`, '< 10%', ok(evictionRate === null ? null : evictionRate < TARGETS.evictionRate)],
    ['Blob egress, busiest day', formatBytes(maxEgress), '< 100 GB/day', ok(s.egress_per_day.length ? maxEgress < TARGETS.egressBytesPerDay : null)],
    ['Thrash (re-download after eviction)', String(t.thrash), 'low', '—'],
    ['Jobs started', String(t.started), '', ''],
  ];
}

export function renderMarkdown(s: MetricsSeries, pools: PoolLine[], chartDir: string): { text: string; charts: Chart[] } {
  const cs = charts(s);
  const ops = opportunities(s, pools).slice(0, 3);
  const lines = [
    `# lora-router report: ${s.since.slice(0, 16).replace('T', ' ')} → ${s.until.slice(0, 16).replace('T', ' ')} UTC`,
    '',
    `Scope: ${s.scope === 'fleet' ? 'the whole fleet' : 'your own jobs'}; step ${s.step_seconds} s; source \`GET /api/metrics\` (rollups).`,
    '',
    '## Against the ADR-010 targets',
    '',
    '| metric | this period | target | |',
    '|---|---|---|---|',
    ...summaryRows(s).map((r) => `| ${r.join(' | ')} |`),
    '',
    '## The three biggest opportunities',
    '',
    ...(ops.length ? ops.map((o, i) => `${i + 1}. ${o.text}`) : ['No target missed and nothing thrashing, idle or backlogged in this period.']),
    '',
    '## Charts',
    '',
    ...cs.flatMap((c) => [`### ${c.title}`, '', `![${c.title}](${chartDir}/${c.file})`, '']),
    '## Top LoRAs',
    '',
    '| by requests | requests | by bytes downloaded | bytes |',
    '|---|---|---|---|',
    ...Array.from({ length: Math.max(s.top_loras.by_requests.length, s.top_loras.by_bytes.length) }, (_, i) => {
      const a = s.top_loras.by_requests[i];
      const b = s.top_loras.by_bytes[i];
      return `| ${a?.key ?? ''} | ${a?.requests ?? ''} | ${b?.key ?? ''} | ${b ? formatBytes(b.bytes) : ''} |`;
    }),
    '',
  ];
  if (s.machines.length) {
    lines.push('## Machines', '', '| machine | pool | live | cache used / budget | hit rate | downloaded | evictions | thrash |', '|---|---|---|---|---|---|---|---|');
    for (const m of s.machines) {
      lines.push(`| ${m.machine_id} | ${m.pool} | ${m.live ? 'yes' : 'no'} | ${formatBytes(m.used_bytes)} / ${formatBytes(m.budget_bytes)} | ${pct(m.hit_rate)} | ${formatBytes(m.bytes_downloaded)} | ${m.evictions} | ${m.thrash} |`);
    }
    lines.push('', '(Machine counters are the agents\' lifetime totals, not this period\'s.)', '');
  }
  return { text: lines.join('\n'), charts: cs };
}

/** HTML: the same content with the charts inline. */
export function renderHtml(s: MetricsSeries, pools: PoolLine[]): string {
  const { text, charts: cs } = renderMarkdown(s, pools, '.');
  const esc = (v: string) => v.replace(/[<>&]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;' })[c]!);
  const body = text
    .split('\n')
    .map((l) => {
      const img = /^!\[(.*)\]\(\.\/(.+)\)$/.exec(l);
      if (img) return cs.find((c) => c.file === img[2])?.svg ?? '';
      if (l.startsWith('# ')) return `<h1>${esc(l.slice(2))}</h1>`;
      if (l.startsWith('## ')) return `<h2>${esc(l.slice(3))}</h2>`;
      if (l.startsWith('### ')) return `<h3>${esc(l.slice(4))}</h3>`;
      if (l.startsWith('|---')) return '';
      if (l.startsWith('|')) return `<tr>${l.slice(1, -1).split('|').map((c) => `<td>${esc(c.trim()).replace(/\*\*(.+?)\*\*/g, '<b>$1</b>')}</td>`).join('')}</tr>`;
      if (l.trim() === '') return '';
      return `<p>${esc(l).replace(/\*\*(.+?)\*\*/g, '<b>$1</b>').replace(/`(.+?)`/g, '<code>$1</code>')}</p>`;
    })
    .join('\n')
    .replace(/(<tr>[\s\S]*?<\/tr>)(?!\s*<tr>)/g, '$1</table>')
    .replace(/(?<!<\/tr>\s*)<tr>/g, '<table border="1" cellspacing="0" cellpadding="4"><tr>');
  return `<!doctype html><html><head><meta charset="utf-8"><title>lora-router report</title></head><body style="font-family:sans-serif;max-width:960px">\n${body}\n</body></html>\n`;
}

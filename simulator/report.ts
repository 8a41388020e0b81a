// Output of a simulator run: a text table for stdout, the JSON report and an SVG bar chart comparing the policies.
import type { WorkloadSpec, GeneratedWorkload } from './workloads.js';
import { GiB } from './workloads.js';
import type { BestPossible, PolicyMetrics } from './metrics.js';

export interface PolicyTiming {
  policy: string;
  /** Whole run of the policy (engine + scheduler). Not deterministic, kept out of `policies`. */
  wallSeconds: number;
  /** Time inside schedule(). */
  schedulerSeconds: number;
}

export interface SimulationReport {
  command: string;
  workload: {
    name: string;
    description: string;
    seed: number;
    spec: WorkloadSpec;
    jobs: number;
    arrivalRatePerSecond: number;
    meanRunSeconds: number;
    meanLoraBytes: number;
    catalogueBytes: number;
    loras: number;
  };
  /** What no policy can beat on this workload (see metrics.ts bestPossible). */
  bestPossible: BestPossible | null;
  /** Deterministic for a seed: equal runs give byte-identical JSON for this part. */
  policies: PolicyMetrics[];
  timing: PolicyTiming[];
}

export function buildReport(
  command: string,
  workload: GeneratedWorkload,
  policies: PolicyMetrics[],
  timing: PolicyTiming[],
  best: BestPossible | null = null,
): SimulationReport {
  return {
    command,
    workload: {
      name: workload.spec.name,
      description: workload.spec.description,
      seed: workload.seed,
      spec: workload.spec,
      jobs: workload.jobs.length,
      arrivalRatePerSecond: Number(workload.arrivalRatePerSecond.toPrecision(6)),
      meanRunSeconds: Number(workload.meanRunSeconds.toPrecision(6)),
      meanLoraBytes: Math.round(workload.meanLoraBytes),
      catalogueBytes: workload.catalogueBytes,
      loras: workload.loras.length,
    },
    bestPossible: best,
    policies,
    timing,
  };
}

/** Label of the best-possible row in tables and charts. */
export const BEST_LABEL = 'best possible';

const pct = (x: number): string => `${(100 * x).toFixed(1)} %`;
const gib = (b: number): string => (b / GiB).toFixed(1);
const sec = (x: number): string => x.toFixed(1);

/** Column headers and rows of the comparison table (also used for the Markdown table in the docs). */
export function tableRows(
  policies: readonly PolicyMetrics[],
  timing: readonly PolicyTiming[],
  best: BestPossible | null = null,
): string[][] {
  const header = [
    'policy',
    'hit/LoRA',
    'hit/job',
    'GiB down',
    '× bound',
    'evict',
    'thrash',
    'score>0',
    'start p50 s',
    'p95 s',
    'p99 s',
    'jobs/machine CV',
    'busy max/mean',
    'wall s',
  ];
  const rows = [header];
  for (const p of policies) {
    const t = timing.find((x) => x.policy === p.policy);
    rows.push([
      p.policy,
      pct(p.hitRateLora),
      pct(p.hitRateJob),
      gib(p.bytesDownloaded),
      p.bytesRatio.toFixed(2),
      String(p.evictions),
      String(p.thrash),
      pct(p.scoredShare),
      sec(p.startLatency.p50),
      sec(p.startLatency.p95),
      sec(p.startLatency.p99),
      p.load.jobsPerMachineCv.toFixed(3),
      p.load.busyMaxOverMean.toFixed(2),
      t ? t.wallSeconds.toFixed(1) : '',
    ]);
  }
  if (best) {
    const l = best.startLatency;
    const bt = timing.find((x) => x.policy === BEST_LABEL);
    rows.push([
      BEST_LABEL,
      pct(best.hitRateLora),
      pct(best.hitRateJob),
      gib(best.compulsoryBytes),
      best.bytesRatio.toFixed(2),
      '–',
      '–',
      '–',
      l ? sec(l.p50) : '–',
      l ? sec(l.p95) : '–',
      l ? sec(l.p99) : '–',
      '–',
      '–',
      bt ? bt.wallSeconds.toFixed(1) : '',
    ]);
  }
  return rows;
}

export function formatTable(rows: readonly string[][]): string {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  return rows
    .map((r, i) => {
      const line = r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('  ');
      return i === 0 ? `${line}\n${widths.map((w) => '-'.repeat(w)).join('  ')}` : line;
    })
    .join('\n');
}

/** The rows without the wall-time column (not deterministic): what docs/simulator.md records. */
export function withoutWallTime(rows: readonly string[][]): string[][] {
  const c = rows[0]!.indexOf('wall s');
  return c < 0 ? rows.map((r) => [...r]) : rows.map((r) => r.filter((_, i) => i !== c));
}

/** Markers around a results table in a Markdown file: `<!-- sim:W1 seed=1 -->` … `<!-- /sim:W1 -->`. */
function docsMarkers(workload: string, seed: number): [string, string] {
  return [`<!-- sim:${workload} seed=${seed} -->`, `<!-- /sim:${workload} -->`];
}

/**
 * Compares the table between the markers for this workload and seed in `doc` with `table`. Returns the updated document
 * and whether the recorded table was equal; throws when the markers are missing.
 */
export function syncDocsTable(
  doc: string,
  workload: string,
  seed: number,
  table: string,
): { equal: boolean; recorded: string; updated: string } {
  const [open, close] = docsMarkers(workload, seed);
  const a = doc.indexOf(open);
  const b = a < 0 ? -1 : doc.indexOf(close, a);
  if (a < 0 || b < 0) throw new Error(`markers ${open} … ${close} not found`);
  const recorded = doc.slice(a + open.length, b).trim();
  const updated = `${doc.slice(0, a + open.length)}\n${table}\n${doc.slice(b)}`;
  return { equal: recorded === table.trim(), recorded, updated };
}

export function markdownTable(rows: readonly string[][]): string {
  const [header, ...body] = rows;
  return [
    `| ${header!.join(' | ')} |`,
    `|${header!.map((_, c) => (c === 0 ? '---' : '---:')).join('|')}|`,
    ...body.map((r) => `| ${r.join(' | ')} |`),
  ].join('\n');
}

/** A few extra lines under the table: what the compulsory bound is and where the waiting comes from. */
export function formatDetails(report: SimulationReport): string {
  const lines: string[] = [];
  const w = report.workload;
  const first = report.policies[0];
  lines.push(
    `${w.name} seed ${w.seed}: ${w.jobs} jobs, ${w.arrivalRatePerSecond.toFixed(3)} jobs/s, mean run ${w.meanRunSeconds.toFixed(1)} s, ` +
      `${w.loras} LoRAs (${gib(w.catalogueBytes)} GiB, mean ${(w.meanLoraBytes / 2 ** 20).toFixed(0)} MiB)` +
      (first ? `, compulsory bound ${gib(first.compulsoryBytes)} GiB` : ''),
  );
  for (const p of report.policies) {
    lines.push(
      `  ${p.policy}: joined in-flight ${p.loraJoined}, downloads ${p.downloads}, ` +
        `queue wait mean/p95 ${sec(p.queueWait.mean)}/${sec(p.queueWait.p95)} s, ` +
        `download wait mean/p95 ${sec(p.downloadWait.mean)}/${sec(p.downloadWait.p95)} s, ` +
        `start p95 hit jobs ${sec(p.startLatencyHitJobs.p95)} s / others ${sec(p.startLatencyMissJobs.p95)} s, ` +
        `policy score>0 ${pct(p.policyScoredShare)}, slot utilisation ${pct(p.load.slotUtilisation)}, ` +
        `peak cache ${gib(p.peakCacheBytes)}/${gib(p.cacheBudgetBytes)} GiB`,
    );
  }
  if (report.bestPossible) {
    lines.push(
      `  ${BEST_LABEL}: hit rates if only each LoRA's first request misses (compulsory misses), bytes = the ` +
        `compulsory bound, latency with instant downloads (tick and slot waits only; no policy starts jobs sooner)`,
    );
  }
  for (const t of report.timing) {
    lines.push(`  wall ${t.policy}: ${t.wallSeconds.toFixed(1)} s (schedule() ${t.schedulerSeconds.toFixed(1)} s)`);
  }
  return lines.join('\n');
}

const COLORS = ['#4e79a7', '#f28e2b', '#59a14f', '#e15759', '#76b7b2', '#edc948', '#b07aa1'];

function escapeXml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** Three panels (hit rate per LoRA, bytes / compulsory bound, p95 submit→start), one bar per policy. */
export function renderSvg(report: SimulationReport): string {
  const panels: { title: string; value: (p: PolicyMetrics) => number; label: (x: number) => string; max?: number }[] = [
    { title: 'cache hit rate per LoRA', value: (p) => p.hitRateLora * 100, label: (x) => `${x.toFixed(1)} %`, max: 100 },
    { title: 'bytes downloaded ÷ compulsory bound', value: (p) => p.bytesRatio, label: (x) => `${x.toFixed(2)}×` },
    { title: 'p95 submit→start (s)', value: (p) => p.startLatency.p95, label: (x) => `${x.toFixed(1)} s` },
  ];
  const best = report.bestPossible;
  const policies: PolicyMetrics[] = [...report.policies];
  if (best) {
    // A pseudo-policy carrying the best-possible figures for the three panels.
    policies.push({
      ...report.policies[0]!,
      policy: BEST_LABEL,
      hitRateLora: best.hitRateLora,
      bytesRatio: best.bytesRatio,
      startLatency: best.startLatency ?? { mean: NaN, p50: NaN, p95: NaN, p99: NaN, max: NaN },
    });
  }
  const color = (i: number): string => (policies[i]!.policy === BEST_LABEL ? '#9e9e9e' : COLORS[i % COLORS.length]!);
  const panelW = 280;
  const panelH = 220;
  const top = 70;
  const left = 20;
  const width = left + panels.length * (panelW + 20);
  const height = top + panelH + 70;
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" ` +
      `font-family="sans-serif" font-size="12">`,
  );
  out.push(`<rect width="100%" height="100%" fill="#ffffff"/>`);
  out.push(
    `<text x="${left}" y="24" font-size="16" font-weight="bold">${escapeXml(
      `Routing simulator — ${report.workload.name}, seed ${report.workload.seed}, ${report.workload.jobs} jobs`,
    )}</text>`,
  );
  // Legend
  policies.forEach((p, i) => {
    const x = left + i * 120;
    out.push(`<rect x="${x}" y="36" width="12" height="12" fill="${color(i)}"/>`);
    out.push(`<text x="${x + 18}" y="46">${escapeXml(p.policy)}</text>`);
  });
  panels.forEach((panel, k) => {
    const x0 = left + k * (panelW + 20);
    const values = policies.map(panel.value);
    const max = panel.max ?? Math.max(1e-9, ...values.filter(Number.isFinite)) * 1.15;
    const plotTop = top + 20;
    const plotH = panelH - 20;
    out.push(`<text x="${x0 + panelW / 2}" y="${top + 8}" text-anchor="middle" font-weight="bold">${escapeXml(panel.title)}</text>`);
    out.push(`<line x1="${x0}" y1="${plotTop + plotH}" x2="${x0 + panelW}" y2="${plotTop + plotH}" stroke="#333"/>`);
    const slot = panelW / Math.max(1, policies.length);
    const barW = Math.min(60, slot * 0.6);
    values.forEach((v, i) => {
      const h = Number.isFinite(v) ? Math.max(0, (v / max) * plotH) : 0;
      const bx = x0 + i * slot + (slot - barW) / 2;
      const by = plotTop + plotH - h;
      out.push(
        `<rect x="${bx.toFixed(1)}" y="${by.toFixed(1)}" width="${barW.toFixed(1)}" height="${h.toFixed(1)}" ` +
          `fill="${color(i)}"><title>${escapeXml(`${policies[i]!.policy}: ${panel.label(v)}`)}</title></rect>`,
      );
      out.push(`<text x="${(bx + barW / 2).toFixed(1)}" y="${(by - 4).toFixed(1)}" text-anchor="middle">${escapeXml(panel.label(v))}</text>`);
      out.push(
        `<text x="${(bx + barW / 2).toFixed(1)}" y="${plotTop + plotH + 16}" text-anchor="middle" font-size="10">${escapeXml(policies[i]!.policy)}</text>`,
      );
    });
  });
  out.push(
    `<text x="${left}" y="${height - 12}" fill="#555">${escapeXml(report.command)}</text>`,
  );
  out.push('</svg>');
  return out.join('\n') + '\n';
}

// `lora-router report --since 7d [--format md|html] [--out file]`: the ADR-010 weekly report from GET /api/metrics.
// With an admin token it covers the fleet (and pools' backlog); with a user token, the user's own jobs.
import { mkdirSync, writeFileSync } from 'node:fs';
import { basename, dirname, extname, join } from 'node:path';
import { Option, type Command } from 'commander';
import type { MetricsSeries } from '../../functions/core/metrics/series.js';
import { renderHtml, renderMarkdown, type PoolLine } from '../report/render.js';
import type { CliContext } from '../index.js';

export function register(program: Command, ctx: CliContext): void {
  program
    .command('report')
    .description('write the period\'s numbers against the ADR-010 targets, with SVG charts and the three biggest opportunities')
    .option('--since <duration>', 'how far back: 1h, 7d, or an ISO time', '7d')
    .option('--step <duration>', 'time step of the charts (default: 1m up to 6h, 1h up to 48h, else 1d)')
    .addOption(new Option('--format <format>', 'output format').choices(['md', 'html']).default('md'))
    .option('--out <file>', 'output file (default: lora-router-report-<date>.<md|html> in this directory)')
    .action(async (opts: { since: string; step?: string; format: 'md' | 'html'; out?: string }) => {
      const api = ctx.api();
      const q = new URLSearchParams({ since: opts.since, ...(opts.step ? { step: opts.step } : {}) });
      const res = await api.get<{ timeseries: MetricsSeries }>(`metrics?${q}`);
      const pools = res.timeseries.scope === 'fleet' ? ((await api.get<{ pools: PoolLine[] }>('pools').catch(() => ({ pools: [] }))).pools ?? []) : [];
      const out = opts.out ?? `lora-router-report-${new Date().toISOString().slice(0, 10)}.${opts.format}`;
      mkdirSync(dirname(out) || '.', { recursive: true });
      if (opts.format === 'html') {
        writeFileSync(out, renderHtml(res.timeseries, pools));
        process.stdout.write(`wrote ${out} (charts inline)\n`);
        return;
      }
      const chartDir = `${basename(out, extname(out))}-charts`;
      const { text, charts } = renderMarkdown(res.timeseries, pools, chartDir);
      mkdirSync(join(dirname(out), chartDir), { recursive: true });
      for (const c of charts) writeFileSync(join(dirname(out), chartDir, c.file), c.svg);
      writeFileSync(out, text);
      process.stdout.write(`wrote ${out} and ${charts.length} SVG charts in ${join(dirname(out), chartDir)}/\n`);
    });
}

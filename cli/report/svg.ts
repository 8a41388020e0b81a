// Minimal server-side SVG charts for the weekly report: a line chart and a bar chart with an optional target line.
// Written by hand (no chart library on npm renders SVG without a DOM or canvas at a small size); plain SVG 1.1 that
// GitHub, browsers and Markdown viewers display.
const W = 640;
const H = 240;
const PAD = { left: 56, right: 16, top: 28, bottom: 40 };

const esc = (s: string) => s.replace(/[<>&"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;' })[c]!);
const fmt = (v: number) => (Math.abs(v) >= 100 || Number.isInteger(v) ? String(Math.round(v)) : v.toFixed(2));
const COLORS = ['#2563eb', '#dc2626', '#16a34a', '#9333ea', '#ea580c'];

export interface LineSeries {
  name: string;
  /** null = no data at that point (a gap). */
  values: (number | null)[];
}

function frame(title: string, yMax: number, yLabel: string, xLabels: string[], body: string, legend: string[]): string {
  const plotH = H - PAD.top - PAD.bottom;
  const ticks = [0, 0.25, 0.5, 0.75, 1].map((f) => {
    const y = PAD.top + plotH * (1 - f);
    return `<line x1="${PAD.left}" x2="${W - PAD.right}" y1="${y}" y2="${y}" stroke="#e5e7eb"/><text x="${PAD.left - 6}" y="${y + 4}" text-anchor="end" font-size="10">${fmt(yMax * f)}</text>`;
  });
  const every = Math.max(1, Math.ceil(xLabels.length / 8));
  const plotW = W - PAD.left - PAD.right;
  const xs = xLabels
    .map((l, i) => (i % every === 0 ? `<text x="${PAD.left + (plotW * (i + 0.5)) / xLabels.length}" y="${H - PAD.bottom + 14}" text-anchor="middle" font-size="9">${esc(l)}</text>` : ''))
    .join('');
  const leg = legend.map((n, i) => `<rect x="${PAD.left + i * 130}" y="${H - 14}" width="10" height="10" fill="${COLORS[i % COLORS.length]}"/><text x="${PAD.left + i * 130 + 14}" y="${H - 5}" font-size="10">${esc(n)}</text>`).join('');
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif">`,
    `<title>${esc(title)}</title><rect width="${W}" height="${H}" fill="#fff"/>`,
    `<text x="${W / 2}" y="16" text-anchor="middle" font-size="13" font-weight="bold">${esc(title)}</text>`,
    `<text x="12" y="${PAD.top + plotH / 2}" font-size="10" transform="rotate(-90 12 ${PAD.top + plotH / 2})" text-anchor="middle">${esc(yLabel)}</text>`,
    ...ticks,
    body,
    xs,
    leg,
    '</svg>',
  ].join('\n');
}

export function lineChart(title: string, yLabel: string, xLabels: string[], series: LineSeries[], opts: { yMax?: number; target?: number } = {}): string {
  const all = series.flatMap((s) => s.values.filter((v): v is number => v !== null));
  const yMax = opts.yMax ?? Math.max(1e-9, ...all, opts.target ?? 0) * 1.1;
  const plotW = W - PAD.left - PAD.right;
  const plotH = H - PAD.top - PAD.bottom;
  const x = (i: number) => PAD.left + (plotW * (i + 0.5)) / Math.max(1, xLabels.length);
  const y = (v: number) => PAD.top + plotH * (1 - Math.min(v, yMax) / yMax);
  const paths = series.map((s, k) => {
    const color = COLORS[k % COLORS.length];
    let d = '';
    let pen = false;
    const dots: string[] = [];
    s.values.forEach((v, i) => {
      if (v === null) {
        pen = false;
        return;
      }
      d += `${pen ? 'L' : 'M'}${x(i).toFixed(1)},${y(v).toFixed(1)} `;
      pen = true;
      dots.push(`<circle cx="${x(i).toFixed(1)}" cy="${y(v).toFixed(1)}" r="2" fill="${color}"/>`);
    });
    return `<path d="${d.trim()}" fill="none" stroke="${color}" stroke-width="2"/>${dots.join('')}`;
  });
  const target =
    opts.target !== undefined
      ? `<line x1="${PAD.left}" x2="${W - PAD.right}" y1="${y(opts.target)}" y2="${y(opts.target)}" stroke="#6b7280" stroke-dasharray="4 3"/><text x="${W - PAD.right}" y="${y(opts.target) - 4}" text-anchor="end" font-size="10" fill="#6b7280">target ${fmt(opts.target)}</text>`
      : '';
  return frame(title, yMax, yLabel, xLabels, paths.join('\n') + target, series.map((s) => s.name));
}

export function barChart(title: string, yLabel: string, labels: string[], values: number[], opts: { target?: number } = {}): string {
  const yMax = Math.max(1e-9, ...values, opts.target ?? 0) * 1.1;
  const plotW = W - PAD.left - PAD.right;
  const plotH = H - PAD.top - PAD.bottom;
  const bw = plotW / Math.max(1, labels.length);
  const bars = values
    .map((v, i) => {
      const h = (plotH * v) / yMax;
      return `<rect x="${(PAD.left + i * bw + bw * 0.1).toFixed(1)}" y="${(PAD.top + plotH - h).toFixed(1)}" width="${(bw * 0.8).toFixed(1)}" height="${h.toFixed(1)}" fill="${COLORS[0]}"><title>${esc(labels[i]!)}: ${fmt(v)}</title></rect>`;
    })
    .join('');
  const target =
    opts.target !== undefined
      ? `<line x1="${PAD.left}" x2="${W - PAD.right}" y1="${PAD.top + plotH * (1 - opts.target / yMax)}" y2="${PAD.top + plotH * (1 - opts.target / yMax)}" stroke="#dc2626" stroke-dasharray="4 3"/>`
      : '';
  return frame(title, yMax, yLabel, labels, bars + target, []);
}

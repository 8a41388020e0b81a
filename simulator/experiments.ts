// Experiments behind docs/simulator.md: affinity weight sweeps and what-if bounds. Not part of `npm run sim`.
//   npm run build --silent && node dist/simulator/experiments.js weights [--workload W1] [--seed 1] [--hours 24]
//   npm run build --silent && node dist/simulator/experiments.js bounds  [--workload W1] [--seed 1] [--hours 24]
//   npm run build --silent && node dist/simulator/experiments.js delay   [--workload W1] [--seed 1] [--hours 24]
//   npm run build --silent && node dist/simulator/experiments.js check   [--workload W1] [--hours 1]
//   npm run build --silent && node dist/simulator/experiments.js backlog [--workload D1] [--hours 6]
//   npm run build --silent && node dist/simulator/experiments.js queue   [--workload D1] [--hours 6] [--depths 0,1,2]
//                                  [--variants "start=1;egress=5"] [--baselines true]
//   npm run build --silent && node dist/simulator/experiments.js overflow [--workload P1] [--hours 6] [--thresholds 0,30,60]
//   npm run build --silent && node dist/simulator/experiments.js prewarm [--workload W1] [--hours 6]
//                                  [--variants "headroom=0.25;minIdleEvictMs=600000"] [--depths 0] [--baselines false]
//   npm run build --silent && node dist/simulator/experiments.js eviction [--workload W1] [--seed 1] [--budgets 100,150,200]
//   npm run build --silent && node dist/simulator/experiments.js stacked [--workload W1] [--seed 1]
// Prints a table per experiment (and writes it as JSON to simulator/out/experiment-<name>-<workload>-seed<seed>.json).
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { parseOverflowRoutes, type PoolOverflow, type SchedulerExtensions, type WeightOverrides } from '../functions/core/scheduler/index.js';
import { simulate } from './engine.js';
import { EVICT, HIT_FIRST } from './extensions.js';
import type { PrewarmSimOptions } from './prewarm.js';
import type { EvictionExperiment } from './eviction-orders.js';
import { quantile, summarize, type PolicyMetrics } from './metrics.js';
import { formatTable, tableRows, type PolicyTiming } from './report.js';
import { runPolicies, type PolicyRun } from './run.js';
import { WORKLOADS, generateWorkload, machinePool, type WorkloadName, type WorkloadSpec } from './workloads.js';

type Variant = { label: string; weights: WeightOverrides; extensions?: SchedulerExtensions };

/** Affinity weight variants: one knob at a time around the defaults, then combinations. */
const WEIGHT_VARIANTS: Variant[] = [
  { label: 'default', weights: {} },
  { label: 'hrw=0', weights: { hrw: 0 } },
  { label: 'hrw=10', weights: { hrw: 10 } },
  { label: 'hrw=25', weights: { hrw: 25 } },
  { label: 'load=0', weights: { load: 0 } },
  { label: 'load=0.05', weights: { load: 0.05 } },
  { label: 'load=0.5', weights: { load: 0.5 } },
  { label: 'load=1', weights: { load: 1 } },
  { label: 'download=0', weights: { download: 0 } },
  { label: 'download=3', weights: { download: 3 } },
  { label: 'affinity=0.3', weights: { affinity: 0.3 } },
  { label: 'affinity=3', weights: { affinity: 3 } },
  { label: 'sharedHit=10', weights: { sharedHit: 10 } },
  { label: 'bound1/min1', weights: { loadBound: 1, loadBoundMinSlots: 1 } },
  { label: 'bound1.25/min1', weights: { loadBound: 1.25, loadBoundMinSlots: 1 } },
];

/**
 * Delay scheduling (`delay` = k, `delayCapSeconds`), per-pass hit-first matching (HIT_FIRST) and eviction-aware
 * placement (the `evict` scorer, EVICT; both registered from extensions.ts), against the affinity policy without them (`delay=0`). See docs/simulator.md, "Experiments".
 */
const DELAY_VARIANTS: Variant[] = [
  { label: 'delay=0 (before)', weights: { delay: 0 } },
  { label: 'hitFirst', weights: { delay: 0 }, extensions: HIT_FIRST },
  { label: 'evict=1', weights: { delay: 0, evict: 1 }, extensions: EVICT },
  ...[
    [1, 8],
    [3, 8],
    [10, 8],
    [10, 15],
    [100, 10],
    [100, 12],
    [100, 15],
    [100, 20],
    [5, 12],
    [8, 12],
    [3, 15],
    [5, 15],
    [3, 20],
    [5, 20],
    [2, 20],
    [1.5, 30],
    [2, 30],
    [2.5, 30],
    [3, 30],
    [4, 30],
  ].map(([k, cap]) => ({ label: `delay=${k}, cap ${cap} s`, weights: { delay: k!, delayCapSeconds: cap! } })),
  { label: 'delay=2, cap 30 s, hitFirst', weights: { delay: 2, delayCapSeconds: 30 }, extensions: HIT_FIRST },
  { label: 'delay=3, cap 30 s, evict=1', weights: { delay: 3, delayCapSeconds: 30, evict: 1 }, extensions: EVICT },
  { label: 'delay=3, cap 30 s, hrw=0', weights: { delay: 3, delayCapSeconds: 30, hrw: 0 } },
  { label: 'delay=3, cap 30 s, hrw=10', weights: { delay: 3, delayCapSeconds: 30, hrw: 10 } },
];

type BacklogVariant = [label: string, spec: WorkloadSpec, policy: string, weights?: WeightOverrides, prewarm?: PrewarmSimOptions];

function parseKv(label: string): WeightOverrides {
  return Object.fromEntries(
    label.split(',').map((kv) => {
      const [k, v] = kv.split('=');
      return [k!.trim(), Number(v)];
    }),
  );
}

/** Start p50/p95/p99, × bound and the backlog (submitted, not started) at 6 points and its max, one row per variant. */
function backlogTable(spec: WorkloadSpec, seed: number, variants: BacklogVariant[]): unknown[] {
  const workload = generateWorkload(spec, seed);
  const endMs = spec.hours * 3_600_000;
  const samples = 6;
  process.stdout.write(`\n${spec.name} (${spec.hours} h, seed ${seed}, ${workload.jobs.length} jobs): start p50/p95/p99 s, × bound, backlog at each ${spec.hours / samples} h and its max\n`);
  const rows: unknown[] = [];
  for (const [label, s, policy, weights, prewarm] of variants) {
    const w = s === spec ? workload : { ...workload, spec: s };
    const t0 = Date.now();
    const rec = simulate(w, { policy, ...(weights ? { weights } : {}), ...(prewarm ? { prewarm } : {}) });
    const m = summarize(w, rec);
    const backlog: number[] = [];
    let max = 0;
    const events: [number, number][] = [];
    for (let j = 0; j < rec.jobs; j++) events.push([rec.arrivalMs[j]!, 1], [rec.startMs[j]!, -1]);
    events.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    let cur = 0;
    let next = endMs / samples;
    for (const [t, d] of events) {
      while (t > next && backlog.length < samples) {
        backlog.push(cur);
        next += endMs / samples;
      }
      cur += d;
      if (cur > max) max = cur;
    }
    while (backlog.length < samples) backlog.push(cur);
    const r1 = (x: number) => Math.round(x * 10) / 10;
    const row = { label, p50: r1(m.startLatency.p50), p95: r1(m.startLatency.p95), p99: r1(m.startLatency.p99), xBound: m.bytesRatio, hitLora: m.hitRateLora, backlog, maxBacklog: max, prewarm: rec.prewarm };
    rows.push(row);
    const pw = rec.prewarm ? ` hints ${rec.prewarm.hints}, fetched ${rec.prewarm.fetched} (${(rec.prewarm.fetchedBytes / 1024 ** 3).toFixed(1)} GiB), declined ${rec.prewarm.declined}, dropped ${rec.prewarm.dropped}` : '';
    process.stdout.write(`| ${label} | ${row.p50} | ${row.p95} | ${row.p99} | ${row.xBound.toFixed(2)} | ${(100 * m.hitRateLora).toFixed(1)} % | ${backlog.join(' · ')} | ${max} |  (${((Date.now() - t0) / 1000).toFixed(0)} s)${pw}\n`);
  }
  return rows;
}

type OverflowVariant = [label: string, policy: string, overflow: PoolOverflow | undefined];

/**
 * Cross-pool overflow on a workload with pools: start p50/p95/p99 over all jobs and per home pool, jobs overflowed,
 * × bound, the largest backlog. One row per (policy, overflow setting).
 */
function overflowTable(spec: WorkloadSpec, seed: number, variants: OverflowVariant[]): unknown[] {
  const workload = generateWorkload(spec, seed);
  const pools = (spec.pools ?? [{ name: 'default' }]).map((p) => p.name);
  process.stdout.write(
    `\n${spec.name} (${spec.hours} h, seed ${seed}, ${workload.jobs.length} jobs): start p50/p95/p99 s (all), p95/p99 per home pool ` +
      `(${pools.join(', ')}), share of jobs overflowed, × bound, max backlog, share of a's jobs run in b\n`,
  );
  const rows: unknown[] = [];
  for (const [label, policy, overflow] of variants) {
    const t0 = Date.now();
    const rec = simulate(workload, { policy, ...(overflow ? { overflow } : {}) });
    const m = summarize(workload, rec);
    const r1 = (x: number) => Math.round(x * 10) / 10;
    const perPool: Record<string, { p95: number; p99: number; jobs: number; ranElsewhere: number }> = {};
    for (const pool of pools) {
      const lat: number[] = [];
      let elsewhere = 0;
      for (let j = 0; j < rec.jobs; j++) {
        if ((workload.jobs[j]!.pool ?? 'default') !== pool) continue;
        lat.push(rec.startMs[j]! - rec.arrivalMs[j]!);
        if (machinePool(spec, rec.machineOf[j]!) !== pool) elsewhere++;
      }
      lat.sort((a, b) => a - b);
      perPool[pool] = { p95: r1(quantile(lat, 0.95) / 1000), p99: r1(quantile(lat, 0.99) / 1000), jobs: lat.length, ranElsewhere: elsewhere };
    }
    const events: [number, number][] = [];
    for (let j = 0; j < rec.jobs; j++) events.push([rec.arrivalMs[j]!, 1], [rec.startMs[j]!, -1]);
    events.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    let cur = 0;
    let maxBacklog = 0;
    for (const [, d] of events) {
      cur += d;
      if (cur > maxBacklog) maxBacklog = cur;
    }
    const row = {
      label,
      p50: r1(m.startLatency.p50),
      p95: r1(m.startLatency.p95),
      p99: r1(m.startLatency.p99),
      perPool,
      overflowed: rec.overflowed,
      overflowedShare: rec.overflowed / rec.jobs,
      xBound: m.bytesRatio,
      maxBacklog,
    };
    rows.push(row);
    const poolCells = pools.map((p) => `${perPool[p]!.p95} / ${perPool[p]!.p99}`).join(' | ');
    process.stdout.write(
      `| ${label} | ${row.p50} | ${row.p95} | ${row.p99} | ${poolCells} | ${(100 * row.overflowedShare).toFixed(1)} % | ${row.xBound.toFixed(2)} | ${maxBacklog} |  (${((Date.now() - t0) / 1000).toFixed(0)} s)\n`,
    );
  }
  return rows;
}

function options(argv: string[]) {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      workload: { type: 'string', default: 'W1' },
      seed: { type: 'string', default: '1' },
      hours: { type: 'string' },
      variants: { type: 'string' },
      depths: { type: 'string' },
      baselines: { type: 'string' },
      thresholds: { type: 'string' },
      routes: { type: 'string' },
      budgets: { type: 'string' },
      out: { type: 'string', default: 'simulator/out' },
    },
  });
  const spec: WorkloadSpec = { ...WORKLOADS[values.workload as WorkloadName] };
  if (!spec.name) throw new Error(`unknown workload ${values.workload}`);
  if (values.hours !== undefined) spec.hours = Number(values.hours);
  return { experiment: positionals[0] ?? 'weights', spec, seed: Number(values.seed), values };
}

function print(title: string, metrics: PolicyMetrics[], timing: PolicyTiming[]): void {
  process.stdout.write(`\n${title}\n${formatTable(tableRows(metrics, timing))}\n`);
  for (const m of metrics) {
    process.stdout.write(
      `  ${m.policy}: queue wait p95 ${m.queueWait.p95.toFixed(1)} s, download wait p95 ${m.downloadWait.p95.toFixed(1)} s, ` +
        `joined ${m.loraJoined}, slot utilisation ${(100 * m.load.slotUtilisation).toFixed(1)} %\n`,
    );
  }
}

function main(argv: string[]): void {
  const { experiment, spec, seed, values } = options(argv);
  const results: { title: string; metrics: PolicyMetrics[]; timing: PolicyTiming[] }[] = [];
  const run = (title: string, s: WorkloadSpec, runs: PolicyRun[]): void => {
    const workload = generateWorkload(s, seed);
    process.stderr.write(`${title}: ${workload.jobs.length} jobs\n`);
    const { metrics, timing } = runPolicies(workload, runs, {
      onDone: (m, t) => process.stderr.write(`  ${m.policy} ${t.wallSeconds.toFixed(1)} s\n`),
    });
    print(title, metrics, timing);
    results.push({ title, metrics, timing });
  };
  const all: PolicyRun[] = [
    { label: 'fifo', policy: 'fifo' },
    { label: 'adr010', policy: 'adr010' },
    { label: 'affinity', policy: 'affinity' },
  ];

  const rows: unknown[] = [];
  switch (experiment) {
    case 'weights': {
      const wanted = values.variants?.split(';').map((s) => s.trim());
      const variants: Variant[] = wanted
        ? wanted.map((label) => ({
            label,
            weights: label === 'default' ? {} : Object.fromEntries(label.split(',').map((kv) => {
              const [k, v] = kv.split('=');
              return [k!.trim(), Number(v)];
            })),
          }))
        : WEIGHT_VARIANTS;
      run(
        `affinity weight variants on ${spec.name} (${spec.hours} h, seed ${seed})`,
        spec,
        variants.map((v) => ({ label: v.label, policy: 'affinity', weights: v.weights })),
      );
      break;
    }
    case 'delay': {
      run(
        `delay scheduling, hit-first, eviction-aware variants on ${spec.name} (${spec.hours} h, seed ${seed})`,
        spec,
        [
          { label: 'fifo', policy: 'fifo' },
          { label: 'adr010', policy: 'adr010' },
          ...DELAY_VARIANTS.map((v) => ({
            label: v.label,
            policy: 'affinity',
            weights: v.weights,
            ...(v.extensions ? { extensions: v.extensions } : {}),
          })),
        ],
      );
      break;
    }
    case 'bounds': {
      // Waiting for a free slot alone: downloads take no time (so routing cannot matter for latency).
      run(`${spec.name} with instant downloads (queueing only)`, { ...spec, downloadBytesPerSecond: 1e15 }, all);
      // One copy of every LoRA would fit the fleet: no cache pressure at all (budget = whole catalogue per machine).
      run(`${spec.name} with a 2 TiB cache per machine (no evictions)`, { ...spec, cacheBudgetBytes: 2 * 1024 ** 4 }, all);
      // The scheduler sees the live cache (no heartbeat lag).
      run(`${spec.name} with live cache reports (heartbeatMs 0)`, { ...spec, heartbeatMs: 0 }, all);
      // Other fleet shapes at the same 80 % utilisation.
      run(`${spec.name} with 1 slot per machine`, { ...spec, slotsPerMachine: 1 }, all);
      run(`${spec.name} with 4 slots per machine`, { ...spec, slotsPerMachine: 4, cacheBudgetBytes: spec.cacheBudgetBytes }, all);
      run(`${spec.name} at 60 % utilisation`, { ...spec, utilisation: 0.6 }, all);
      break;
    }
    case 'eviction': {
      // Can the cache, rather than routing, move the W1 goals? Other eviction orders at the fleet's 50 GiB, then LRU
      // with bigger caches (what the goals would need). The default policy throughout.
      const min = 60_000;
      const orders: [string, EvictionExperiment][] = [
        ['LRU (the agent)', { order: 'lru' }],
        ['LRU-2', { order: 'lru2' }],
        ['LRU-2 with history', { order: 'lru2-history' }],
        ['LFU-DA', { order: 'lfu-da' }],
        ['LFU-DA with history', { order: 'lfu-da-history' }],
        ['last copy +10 min', { order: 'last-copy', paramMs: 10 * min }],
        ['last copy +1 h', { order: 'last-copy', paramMs: 60 * min }],
        ['size +5 min per doubling', { order: 'size', paramMs: 5 * min }],
        ['size +15 min per doubling', { order: 'size', paramMs: 15 * min }],
      ];
      run(`eviction orders on ${spec.name} (${spec.hours} h, seed ${seed})`, spec, orders.map(([label, eviction]) => ({ label, policy: 'affinity', eviction })));
      for (const gib of (values.budgets ?? '100,150,200').split(',').map(Number)) {
        run(`${spec.name} with a ${gib} GiB cache per machine (LRU)`, { ...spec, cacheBudgetBytes: gib * 1024 ** 3 }, [{ label: `${gib} GiB`, policy: 'affinity' }]);
      }
      break;
    }
    case 'stacked': {
      // The levers that each moved W1 a little, together: the delay rule's k (bytes against p95) under LRU and under
      // the best eviction order measured (LFU-DA with history), and the shorter cap. Do they reach 12 × at 3.5 s?
      const lfu: EvictionExperiment = { order: 'lfu-da-history' };
      const variants: PolicyRun[] = [
        { label: 'LRU, delay 2 (default)', policy: 'affinity' },
        { label: 'LRU, delay 2.5', policy: 'affinity', weights: { delay: 2.5 } },
        { label: 'LRU, delay 3', policy: 'affinity', weights: { delay: 3 } },
        { label: 'LRU, delay 5', policy: 'affinity', weights: { delay: 5 } },
        { label: 'LFU-DA+h, delay 2, cap 20 s', policy: 'affinity', weights: { delayCapSeconds: 20 }, eviction: lfu },
        { label: 'LFU-DA+h, delay 2.5', policy: 'affinity', weights: { delay: 2.5 }, eviction: lfu },
        { label: 'LFU-DA+h, delay 3', policy: 'affinity', weights: { delay: 3 }, eviction: lfu },
        { label: 'LFU-DA+h, delay 3, cap 20 s', policy: 'affinity', weights: { delay: 3, delayCapSeconds: 20 }, eviction: lfu },
        { label: 'LFU-DA+h, delay 4', policy: 'affinity', weights: { delay: 4 }, eviction: lfu },
        { label: 'LFU-DA+h, delay 5', policy: 'affinity', weights: { delay: 5 }, eviction: lfu },
      ];
      run(`stacked levers on ${spec.name} (${spec.hours} h, seed ${seed})`, spec, variants);
      break;
    }
    case 'check': {
      // The engine's own invariants after every event on the real workload (slow: keep the hours small).
      const workload = generateWorkload(spec, seed);
      for (const p of all) {
        const rec = simulate(workload, { policy: p.policy, checkInvariants: true });
        const m = summarize(workload, rec);
        process.stdout.write(`${p.label}: invariants held over ${m.jobs} jobs (${m.downloads} downloads, ${m.evictions} evictions)\n`);
      }
      return;
    }
    case 'backlog': {
      // Download-heavy fleets: latency and the backlog (jobs submitted, not started yet) over time, per policy, with
      // placement on events (the default) and, for affinity, timer-only placement (before issue 14).
      rows.push(
        ...backlogTable(spec, seed, [
          ['fifo', spec, 'fifo'],
          ['adr010', spec, 'adr010'],
          ['affinity', spec, 'affinity'],
          ['affinity delay=0', spec, 'affinity', { delay: 0 }],
          ['affinity, timer only', { ...spec, placement: 'tick' }, 'affinity'],
        ]),
      );
      results.push({ title: `backlog ${spec.name}`, metrics: rows as PolicyMetrics[], timing: [] });
      break;
    }
    case 'queue': {
      // Downloads that overlap GPU work (issue 14): queue depth per machine, with and without the `start` scorer.
      const depths = (values.depths ?? '0,1,2').split(',').map(Number);
      const variants: BacklogVariant[] = [];
      const extra = values.variants?.split(';').map((v) => v.trim()).filter(Boolean) ?? [];
      for (const q of depths) {
        const s = { ...spec, queueDepth: q };
        if (q === 0 || values.baselines === 'true') {
          variants.push([`fifo q${q}`, s, 'fifo'], [`adr010 q${q}`, s, 'adr010']);
        }
        variants.push([`affinity q${q}`, s, 'affinity']);
        if (q > 0) variants.push([`affinity q${q} start=1`, s, 'affinity', { start: 1 }]);
        for (const label of extra) variants.push([`affinity q${q} ${label}`, s, 'affinity', parseKv(label)]);
      }
      rows.push(...backlogTable(spec, seed, variants));
      results.push({ title: `queue ${spec.name}`, metrics: rows as PolicyMetrics[], timing: [] });
      break;
    }
    case 'overflow': {
      // Cross-pool overflow (POOL_OVERFLOW) on a workload with pools: off vs on (threshold in seconds), per policy.
      const routes = parseOverflowRoutes(values.routes ?? 'a>b;b>a');
      const thresholds = (values.thresholds ?? '30').split(',').map(Number);
      const variants: OverflowVariant[] = [];
      for (const policy of ['fifo', 'adr010', 'affinity']) {
        variants.push([`${policy} off`, policy, undefined]);
        for (const t of thresholds) variants.push([`${policy} overflow ${t} s`, policy, { routes, thresholdSeconds: t }]);
      }
      rows.push(...overflowTable(spec, seed, variants));
      results.push({ title: `overflow ${spec.name}`, metrics: rows as PolicyMetrics[], timing: [] });
      break;
    }
    case 'prewarm': {
      // Predictive pre-warming (issue 14 item 4): the default with hints off (as it runs) and on, plus variants of the
      // hint settings ("headroom=0.25,minIdleEvictMs=600000;..."), at each queue depth given (default 0).
      const depths = (values.depths ?? '0').split(',').map(Number);
      const extra = values.variants?.split(';').map((v) => v.trim()).filter(Boolean) ?? [];
      const variants: BacklogVariant[] = [];
      for (const q of depths) {
        const s = { ...spec, queueDepth: q };
        variants.push([`affinity q${q}, hints off`, s, 'affinity']);
        if (values.baselines !== 'false') variants.push([`affinity q${q}, hints on`, s, 'affinity', undefined, { enabled: true }]);
        for (const label of extra) variants.push([`affinity q${q}, hints ${label}`, s, 'affinity', undefined, { enabled: true, ...parseKv(label) }]);
      }
      rows.push(...backlogTable(spec, seed, variants));
      results.push({ title: `prewarm ${spec.name}`, metrics: rows as PolicyMetrics[], timing: [] });
      break;
    }
    default:
      throw new Error(`unknown experiment ${experiment} (weights | bounds | delay | check | backlog | queue | overflow | prewarm)`);
  }
  const outDir = resolve(process.cwd(), values.out);
  mkdirSync(outDir, { recursive: true });
  const path = join(outDir, `experiment-${experiment}-${spec.name}-seed${seed}${values.hours ? `-${spec.hours}h` : ''}.json`);
  writeFileSync(path, `${JSON.stringify(results, null, 2)}\n`);
  process.stdout.write(`\nwrote ${path}\n`);
}

main(process.argv.slice(2));

// Routing simulator CLI.
//   npm run sim -- --workload W1 --policy all [--seed 1] [--hours 24] [--out simulator/out]
//                  [--weights hrw=4,load=0.2] [--slots 2] [--heartbeat-ms 5000] [--placement events] [--tick-ms 2000]
//                  [--queue-depth 1]
// Prints the comparison table (and the wall time per policy) and writes <out>/<name>.json and <out>/<name>.svg.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { resolve, join } from 'node:path';
import { parseArgs } from 'node:util';
import { policyNames, resolveWeights, type Weights } from '../functions/core/scheduler/index.js';
import { performance } from 'node:perf_hooks';
import { bestPossible } from './metrics.js';
import {
  BEST_LABEL,
  buildReport,
  formatDetails,
  formatTable,
  markdownTable,
  renderSvg,
  syncDocsTable,
  tableRows,
  withoutWallTime,
} from './report.js';
import { latencyFloorRun, runPolicies, type PolicyRun } from './run.js';
import { WORKLOADS, generateWorkload, workloadNames, type WorkloadName, type WorkloadSpec } from './workloads.js';

const USAGE = `Usage: npm run sim -- [options]
  --workload W0|W1|W2|D1|D2|S1  workload (default W1)
  --policy <name>|all     ${policyNames.join(', ')} or all, or a comma list (default all)
  --seed <int>            PRNG seed (default 1)
  --hours <h>             simulated hours of arrivals (default: the workload's)
  --out <dir>             output directory (default simulator/out)
  --weights k=v,...       affinity weight overrides (names as in SCHEDULER_WEIGHTS)
  --slots <n>             slots per machine (default: the workload's)
  --heartbeat-ms <ms>     heartbeat period; 0 = the scheduler sees live caches (default 5000)
  --placement tick|events when the scheduler runs: only on the timer, or also on each arrival and job end
                          (the workload's default; see docs/simulator.md)
  --tick-ms <ms>          scheduler timer period (default 2000)
  --queue-depth <n>       dispatches a machine accepts beyond its slots, downloading while its slots are busy
                          (the workload's default)
  --run-time service|fleet  the busy jobs' expected run time the scheduler is given: their service's mean (default,
                          as the tick learns it) or the fleet's
  --markdown              also print the table as Markdown
  --check-docs <file>     compare the table recorded in <file> (between <!-- sim:W1 seed=1 --> and <!-- /sim:W1 -->)
                          with this run's, wall times left out; exit 1 if they differ
  --update-docs <file>    rewrite that table with this run's`;

function fail(message: string): never {
  process.stderr.write(`${message}\n\n${USAGE}\n`);
  process.exit(2);
}

export function parseWeights(text: string): Partial<Weights> {
  const out: Record<string, number> = {};
  for (const part of text.split(',').map((s) => s.trim()).filter(Boolean)) {
    const [k, v] = part.split('=');
    const value = Number(v);
    if (!k || v === undefined || !Number.isFinite(value)) throw new Error(`bad weight "${part}" (want name=number)`);
    out[k.trim()] = value;
  }
  resolveWeights(out); // throws on unknown names / bad values
  return out as Partial<Weights>;
}

function main(argv: string[]): void {
  let args;
  try {
    args = parseArgs({
      args: argv,
      options: {
        workload: { type: 'string', default: 'W1' },
        policy: { type: 'string', default: 'all' },
        seed: { type: 'string', default: '1' },
        hours: { type: 'string' },
        out: { type: 'string', default: 'simulator/out' },
        weights: { type: 'string' },
        slots: { type: 'string' },
        'heartbeat-ms': { type: 'string' },
        placement: { type: 'string' },
        'tick-ms': { type: 'string' },
        'queue-depth': { type: 'string' },
        'run-time': { type: 'string' },
        markdown: { type: 'boolean', default: false },
        'check-docs': { type: 'string' },
        'update-docs': { type: 'string' },
        help: { type: 'boolean', short: 'h', default: false },
      },
      strict: true,
    }).values;
  } catch (err) {
    fail((err as Error).message);
  }
  if (args.help) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  const name = args.workload as WorkloadName;
  if (!workloadNames.includes(name)) fail(`Unknown workload "${args.workload}".`);
  const seed = Number(args.seed);
  if (!Number.isSafeInteger(seed) || seed < 0) fail(`--seed must be a non-negative integer.`);
  const spec: WorkloadSpec = { ...WORKLOADS[name] };
  if (args.hours !== undefined) {
    const hours = Number(args.hours);
    if (!(hours > 0)) fail('--hours must be > 0.');
    spec.hours = hours;
    if (spec.name !== 'W0') spec.description = spec.description.replace(/24 h$/, `${hours} h`);
  }
  if (args.slots !== undefined) {
    const slots = Number(args.slots);
    if (!Number.isInteger(slots) || slots < 1) fail('--slots must be an integer ≥ 1.');
    spec.slotsPerMachine = slots;
  }
  if (args['heartbeat-ms'] !== undefined) {
    const hb = Number(args['heartbeat-ms']);
    if (!(hb >= 0)) fail('--heartbeat-ms must be ≥ 0.');
    spec.heartbeatMs = hb;
  }
  if (args.placement !== undefined) {
    if (args.placement !== 'tick' && args.placement !== 'events') fail('--placement must be "tick" or "events".');
    spec.placement = args.placement;
  }
  if (args['tick-ms'] !== undefined) {
    const t = Number(args['tick-ms']);
    if (!(t > 0)) fail('--tick-ms must be > 0.');
    spec.tickMs = t;
  }
  if (args['queue-depth'] !== undefined) {
    const q = Number(args['queue-depth']);
    if (!Number.isInteger(q) || q < 0) fail('--queue-depth must be an integer ≥ 0.');
    spec.queueDepth = q;
  }
  if (args['run-time'] !== undefined) {
    if (args['run-time'] !== 'service' && args['run-time'] !== 'fleet') fail('--run-time must be "service" or "fleet".');
    spec.runTimeEstimate = args['run-time'];
  }
  let weights: Partial<Weights> | undefined;
  if (args.weights !== undefined) {
    try {
      weights = parseWeights(args.weights);
    } catch (err) {
      fail((err as Error).message);
    }
  }
  const policies = args.policy === 'all' ? [...policyNames].reverse() : args.policy.split(',').map((s) => s.trim());
  for (const p of policies) {
    if (!(policyNames as readonly string[]).includes(p)) fail(`Unknown policy "${p}".`);
  }
  const runs: PolicyRun[] = policies.map((p) => ({
    label: p,
    policy: p,
    ...(weights && p === 'affinity' ? { weights } : {}),
  }));

  const command = ['npm run sim --', ...argv].join(' ');
  let workload;
  try {
    workload = generateWorkload(spec, seed);
  } catch (err) {
    fail((err as Error).message);
  }
  process.stderr.write(
    `${spec.name} seed ${seed}: ${workload.jobs.length} jobs over ${spec.hours} h, ${spec.machines} machines × ` +
      `${spec.slotsPerMachine} slots; running ${policies.join(', ')}\n`,
  );
  const { metrics, timing } = runPolicies(workload, runs, {
    onDone: (m, t) =>
      process.stderr.write(
        `  ${m.policy}: ${t.wallSeconds.toFixed(1)} s wall (schedule() ${t.schedulerSeconds.toFixed(1)} s)\n`,
      ),
  });
  const t0 = performance.now();
  const best = bestPossible(workload, latencyFloorRun(workload));
  const floorSeconds = (performance.now() - t0) / 1000;
  timing.push({ policy: BEST_LABEL, wallSeconds: Number(floorSeconds.toFixed(2)), schedulerSeconds: 0 });
  process.stderr.write(`  ${BEST_LABEL} (latency floor: fifo with instant downloads): ${floorSeconds.toFixed(1)} s wall\n`);
  const report = buildReport(command, workload, metrics, timing, best);
  const rows = tableRows(metrics, timing, best);
  process.stdout.write(`${formatTable(rows)}\n\n${formatDetails(report)}\n`);
  if (args.markdown) process.stdout.write(`\n${markdownTable(rows)}\n`);

  const outDir = resolve(process.cwd(), args.out);
  mkdirSync(outDir, { recursive: true });
  const suffix = [
    spec.name,
    `seed${seed}`,
    args.hours !== undefined ? `${spec.hours}h` : '',
    args.slots !== undefined ? `${spec.slotsPerMachine}slots` : '',
    args['heartbeat-ms'] !== undefined ? `hb${spec.heartbeatMs}` : '',
    args.placement !== undefined ? spec.placement : '',
    args['tick-ms'] !== undefined ? `tick${spec.tickMs}` : '',
    args['queue-depth'] !== undefined ? `q${spec.queueDepth}` : '',
    weights ? 'weights' : '',
    args.policy === 'all' ? 'all' : policies.join('+'),
  ]
    .filter(Boolean)
    .join('-');
  const jsonPath = join(outDir, `${suffix}.json`);
  const svgPath = join(outDir, `${suffix}.svg`);
  writeFileSync(jsonPath, `${JSON.stringify(report, null, 2)}\n`);
  writeFileSync(svgPath, renderSvg(report));
  process.stdout.write(`\nwrote ${jsonPath}\nwrote ${svgPath}\n`);

  const docsTable = markdownTable(withoutWallTime(rows));
  for (const [flag, update] of [
    ['check-docs', false],
    ['update-docs', true],
  ] as const) {
    const file = args[flag];
    if (file === undefined) continue;
    const path = resolve(process.cwd(), file);
    const result = syncDocsTable(readFileSync(path, 'utf8'), spec.name, seed, docsTable);
    if (update) {
      writeFileSync(path, result.updated);
      process.stdout.write(`updated the ${spec.name} seed ${seed} table in ${path}\n`);
    } else if (result.equal) {
      process.stdout.write(`docs table in ${path} matches this run (${spec.name}, seed ${seed})\n`);
    } else {
      process.stdout.write(
        `docs table in ${path} differs from this run (${spec.name}, seed ${seed}):\n--- recorded\n${result.recorded}\n` +
          `--- this run\n${docsTable}\n`,
      );
      process.exitCode = 1;
    }
  }
}

main(process.argv.slice(2));

// Same decisions, old build vs this one: runs both schedulers over the benchmark's inputs and many seeded synthetic
// inputs (pools, queue depths, busy-since times, avoid lists, filters, weights, runners-up, the simulator's
// extensions) and compares the results exactly (every field, numbers by Object.is). For speed work on the core.
//   git worktree add /tmp/sched-old main && (cd /tmp/sched-old && npm ci && npm run build)   (or any older build)
//   npm run build && node dist/bench/scheduler-compare.js /tmp/sched-old/dist/functions/core/scheduler [--quick]
// Exits 1 at the first difference, printing where it is.
import { pathToFileURL } from 'node:url';
import { resolve } from 'node:path';
import {
  policyNames,
  schedule,
  type MachineState,
  type SchedulerExtensions,
  type SchedulerInput,
  type ScheduleResult,
  type WeightOverrides,
} from '../functions/core/scheduler/index.js';
import { EVICT, HIT_FIRST } from '../simulator/extensions.js';
import { seededRandom, syntheticInput, type SyntheticInput } from '../testkit/scheduler-inputs.js';

type Schedule = (input: SchedulerInput, extensions?: SchedulerExtensions) => ScheduleResult;

/** First path where `a` and `b` differ, or null. */
function diff(a: unknown, b: unknown, path: string): string | null {
  if (typeof a === 'number' && typeof b === 'number') return Object.is(a, b) ? null : `${path}: ${a} vs ${b}`;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) {
    return a === b ? null : `${path}: ${JSON.stringify(a)} vs ${JSON.stringify(b)}`;
  }
  if (Array.isArray(a) !== Array.isArray(b)) return `${path}: array vs object`;
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  if (ka.join(',') !== kb.join(',')) return `${path}: keys [${ka.join(',')}] vs [${kb.join(',')}]`;
  for (const k of ka) {
    const d = diff((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k], `${path}.${k}`);
    if (d) return d;
  }
  return null;
}

/** Adds what the synthetic generator leaves out: queue depths, busy-since times, receiving/acceptsWork, fresh jobs, duplicates. */
function enrich(input: SyntheticInput, seed: number): SyntheticInput {
  const random = seededRandom(seed ^ 0x9e3779b9);
  const machines: MachineState[] = input.machines.map((m) => {
    const queueDepth = random() < 0.5 ? Math.floor(random() * 3) : undefined;
    const busySlots = Math.floor(random() * (m.slots + (queueDepth ?? 0) + 1));
    const copy: MachineState = { ...m, busySlots };
    if (queueDepth !== undefined) copy.queueDepth = queueDepth;
    if (random() < 0.6) {
      copy.busySinceMs = Array.from({ length: busySlots }, () => input.nowMs - Math.floor(random() * 60_000));
    }
    if (random() < 0.03) copy.receiving = false;
    if (random() < 0.03) copy.acceptsWork = false;
    return copy;
  });
  if (machines.length > 4) machines.push({ ...machines[1]!, pool: machines[0]!.pool }); // a duplicated id
  // Odd seeds: fresh jobs (under 40 s old), so the delay rule (delayCapSeconds 30) holds some back.
  const fresh = seed % 2 === 1;
  const jobs = input.jobs.map((j) => {
    const job = fresh ? { ...j, createdAtMs: input.nowMs - Math.floor(random() * 40_000) } : j;
    return random() < 0.02 ? { ...job, loras: [...job.loras, ...job.loras] } : job;
  });
  if (jobs.length > 4) jobs.push({ ...jobs[2]! }); // a duplicated job id
  return { nowMs: input.nowMs, jobs, machines };
}

interface Case {
  name: string;
  input: SchedulerInput;
  extensions?: SchedulerExtensions;
}

function* cases(quick: boolean): Generator<Case> {
  const busy = syntheticInput({ seed: 20240611, jobs: 10_000, machines: 500 });
  const idle = syntheticInput({ seed: 20240611, jobs: 10_000, machines: 500 });
  for (const m of idle.machines) m.busySlots = 0;
  const benches: [string, SyntheticInput][] = [
    ['bench busy', busy],
    ['bench idle', idle],
  ];
  if (!quick) benches.push(['bench large', syntheticInput({ seed: 20240611, jobs: 100_000, machines: 5_000 })]);
  for (const [name, s] of benches) {
    for (const policy of policyNames) {
      for (const runnersUp of [0, 3]) {
        yield { name: `${name} ${policy} runnersUp=${runnersUp}`, input: { ...s, policy, runnersUp } };
      }
      for (const jobs of [1, 3, 20]) {
        yield { name: `${name} ${policy} first ${jobs} jobs`, input: { ...s, jobs: s.jobs.slice(0, jobs), policy } };
      }
    }
  }

  const weightSets: WeightOverrides[] = [
    {},
    { delay: 0 },
    { load: 0 },
    { egress: 0.5, start: 1 },
    { hrw: 0, loadBound: 1, loadBoundMinSlots: 1 },
    { affinity: 0, download: 3, delay: 5, delayCapSeconds: 300 },
    { userHit: 0, sharedHit: 0, overload: 0, avoid: 0 },
  ];
  const seeds = quick ? 12 : 60;
  for (let seed = 1; seed <= seeds; seed++) {
    const random = seededRandom(seed);
    const small = seed % 3 === 0;
    const s = enrich(
      syntheticInput({
        seed,
        jobs: small ? 40 + seed : 2_000,
        machines: small ? 6 + (seed % 7) : 40 + 10 * (seed % 9),
        userKeys: small ? 12 : 300 + 50 * (seed % 5),
        sharedKeys: small ? 5 : 40,
        cachedPerMachine: small ? 4 : 20 + (seed % 4) * 20,
        slots: seed % 2 === 0 ? [1, 8] : [1, 3],
        zipf: [0, 0.6, 0.9, 1.3][seed % 4],
        dead: 0.05,
        draining: 0.05,
        ...(seed % 5 === 0 ? { pools: [{ name: 'solo', share: 1 }] } : {}),
      }),
      seed,
    );
    const expectedJobSeconds = random() < 0.3 ? 0 : 5 + Math.floor(random() * 60);
    for (const [w, weights] of weightSets.entries()) {
      for (const policy of policyNames) {
        if (policy !== 'affinity' && w > 0) continue; // the baselines read no scorer weights
        const runnersUp = (seed + w) % 3 === 0 ? 3 : 0;
        const input: SchedulerInput = { ...s, policy, weights, runnersUp, expectedJobSeconds };
        yield { name: `seed ${seed} ${policy} weights ${JSON.stringify(weights)} runnersUp=${runnersUp}`, input };
      }
    }
    // A placement for a few new jobs (the holder index then asks the caches per key instead of scanning them).
    const few = { ...s, jobs: s.jobs.slice(0, 1 + (seed % 7)) };
    for (const policy of policyNames) {
      yield { name: `seed ${seed} ${policy} ${few.jobs.length} jobs`, input: { ...few, policy, runnersUp: seed % 2 ? 3 : 0 } };
    }
    yield { name: `seed ${seed} affinity + evict`, input: { ...s, policy: 'affinity', weights: { evict: 2 } }, extensions: EVICT };
    yield { name: `seed ${seed} affinity + hit-first`, input: { ...s, policy: 'affinity', runnersUp: 2 }, extensions: HIT_FIRST };
  }
}

async function main(): Promise<void> {
  const dir = process.argv[2];
  if (!dir) {
    console.error('usage: node dist/bench/scheduler-compare.js <old dist/functions/core/scheduler dir> [--quick]');
    process.exit(2);
  }
  const old = (await import(pathToFileURL(resolve(dir, 'index.js')).href)) as { schedule: Schedule };
  let count = 0;
  let assignments = 0;
  let delayed = 0;
  for (const c of cases(process.argv.includes('--quick'))) {
    const a = old.schedule(c.input, c.extensions);
    const b = schedule(c.input, c.extensions);
    const d = diff(a, b, 'result');
    if (d) {
      console.error(`DIFFERENT in case "${c.name}": ${d}`);
      process.exit(1);
    }
    count++;
    assignments += b.assignments.length;
    delayed += b.unassigned.filter((u) => u.reason === 'delayed').length;
  }
  console.log(`identical: ${count} cases, ${assignments} assignments, ${delayed} jobs held back by the delay rule`);
}

await main();

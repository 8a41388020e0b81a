// Workloads for the routing simulator: the fleet (machines, cache budget, link speed, slots) and the job stream (Poisson
// arrivals, LoRA choices from a Zipf popularity law, log-normal LoRA sizes and run times). A workload is generated once
// per seed, before any policy runs, so every policy sees exactly the same jobs.
import type { LoraRef } from '../functions/core/scheduler/index.js';
import { seededRandom, zipfSampler } from '../testkit/scheduler-inputs.js';

export const MiB = 1024 * 1024;
export const GiB = 1024 * MiB;
const HOUR_MS = 60 * 60 * 1000;

export type WorkloadName = 'W0' | 'W1' | 'W2' | 'D1' | 'D2' | 'S1' | 'P1';
export const workloadNames: readonly WorkloadName[] = ['W0', 'W1', 'W2', 'D1', 'D2', 'S1', 'P1'];

/** A kind of job (`service_required`) with its own run-time law (log-normal, the workload's `runSigma`). */
export interface ServiceSpec {
  name: string;
  /** Share of the jobs. */
  share: number;
  runMedianMs: number;
}

export interface WorkloadSpec {
  name: string;
  description: string;
  machines: number;
  /** Jobs a machine runs at once (one per GPU). A job holds its slot from assignment, through its downloads, to its end. */
  slotsPerMachine: number;
  cacheBudgetBytes: number;
  /** Per machine; concurrent downloads on one machine share it equally. */
  downloadBytesPerSecond: number;
  /** When set, links are spread evenly from downloadBytesPerSecond (machine 0) to this (the last machine). */
  downloadBytesPerSecondMax?: number;
  userLoras: number;
  sharedLoras: number;
  /** Zipf exponent of LoRA popularity over one ranking of all user + shared LoRAs. */
  zipfS: number;
  sizeMedianBytes: number;
  /** σ of ln(size). */
  sizeSigma: number;
  sizeMinBytes: number;
  sizeMaxBytes: number;
  /** Distinct LoRAs per job, uniform in [min, max]. */
  lorasPerJob: [number, number];
  runMedianMs: number;
  /** σ of ln(run time). */
  runSigma: number;
  /** Target share of the fleet's slot time taken by running jobs (downloads not counted, see `arrivalRatePerSecond`). */
  utilisation: number;
  hours: number;
  /** W2: at this share of `hours` the popularity ranking rotates by half (yesterday's hot LoRAs go cold). */
  shiftAt?: number;
  /** Scheduler timer period (with `placement: 'events'` the timer is only the safety net). */
  tickMs: number;
  /**
   * When the scheduler runs: 'tick' = only on the timer (the design before issue 14); 'events' = also when a job
   * arrives (a pass over that job) and when a job ends (a pass over all pending jobs), as intake and the completion
   * event do by default.
   */
  placement: 'tick' | 'events';
  /** Heartbeat period: the scheduler sees a machine's cache as of its last heartbeat. 0 = the live cache. */
  heartbeatMs: number;
  /**
   * Dispatches a machine accepts beyond its slots (issue 14, `MachineState.queueDepth`): it downloads their LoRAs while
   * its slots are busy and runs them, first downloaded first, as slots free. Absent = 0 (the design before).
   */
  queueDepth?: number;
  /** Jobs of several services (issue 14, item 3); absent = one service with `runMedianMs`. */
  services?: readonly ServiceSpec[];
  /**
   * What the scheduler is told each busy job will run (`MachineState.busyRunSeconds`): its service's mean ('service',
   * as the tick learns it per service_required; the default) or the fleet's mean ('fleet', the design before).
   */
  runTimeEstimate?: 'service' | 'fleet';
  /**
   * Pools (cross-pool overflow, issue 14): the machines in order, `machines` to each pool, and each pool's share of
   * the jobs. Absent = one pool, `default`.
   */
  pools?: readonly { name: string; machines: number; jobShare: number }[];
}

const W1: WorkloadSpec = {
  name: 'W1',
  description:
    '24 machines × 2 slots, 50 GiB cache, 200 MiB/s each; 3 000 user + 200 shared LoRAs, Zipf s=1.0, sizes log-normal ' +
    'median 150 MiB σ=1 clamped to 10 MiB–1.5 GiB; 1–3 LoRAs per job; run time log-normal median 20 s σ=0.5; ' +
    'Poisson arrivals at 80 % slot utilisation (run time only); 24 h',
  machines: 24,
  slotsPerMachine: 2,
  cacheBudgetBytes: 50 * GiB,
  downloadBytesPerSecond: 200 * MiB,
  userLoras: 3000,
  sharedLoras: 200,
  zipfS: 1.0,
  sizeMedianBytes: 150 * MiB,
  sizeSigma: 1.0,
  sizeMinBytes: 10 * MiB,
  sizeMaxBytes: 1536 * MiB,
  lorasPerJob: [1, 3],
  runMedianMs: 20_000,
  runSigma: 0.5,
  utilisation: 0.8,
  hours: 24,
  tickMs: 2000,
  placement: 'events',
  heartbeatMs: 5000,
};

const D2: WorkloadSpec = {
  ...W1,
  name: 'D2',
  description:
    '16 machines × 1 slot, 60 GiB cache, links 25–50 MiB/s; 800 user + 50 shared LoRAs, Zipf s=0.8, sizes log-normal ' +
    'median 300 MiB σ=1 clamped to 50 MiB–3 GiB; 1–2 LoRAs per job; run median 20 s σ=0.5; 50 % utilisation; 24 h',
  machines: 16,
  slotsPerMachine: 1,
  cacheBudgetBytes: 60 * GiB,
  downloadBytesPerSecond: 25 * MiB,
  downloadBytesPerSecondMax: 50 * MiB,
  userLoras: 800,
  sharedLoras: 50,
  zipfS: 0.8,
  sizeMedianBytes: 300 * MiB,
  sizeSigma: 1,
  sizeMinBytes: 50 * MiB,
  sizeMaxBytes: 3 * GiB,
  lorasPerJob: [1, 2],
  utilisation: 0.5,
};

export const WORKLOADS: Readonly<Record<WorkloadName, WorkloadSpec>> = {
  W0: {
    ...W1,
    name: 'W0',
    description:
      '4 machines × 2 slots, 2 GiB cache (forces evictions), 200 MiB/s; 45 user + 5 shared LoRAs, sizes median 150 MiB ' +
      'clamped to 10–300 MiB; otherwise as W1; 10 simulated minutes (for tests)',
    machines: 4,
    cacheBudgetBytes: 2 * GiB,
    userLoras: 45,
    sharedLoras: 5,
    sizeMaxBytes: 300 * MiB,
    hours: 10 / 60,
  },
  W1,
  W2: {
    ...W1,
    name: 'W2',
    description: 'W1, but at 12 h the popularity ranking rotates by half: the hottest half of the LoRAs goes cold',
    shiftAt: 0.5,
  },
  // Download-heavy fleets (issue 14): one job per box, slow links, big LoRAs, so a download takes about as long as a run.
  D1: {
    ...W1,
    name: 'D1',
    description:
      '24 machines × 1 slot, 100 GiB cache, links 25–50 MiB/s; 1 500 user + 100 shared LoRAs, Zipf s=1.0, sizes ' +
      'log-normal median 600 MiB σ=0.8 clamped to 100 MiB–4 GiB; 1 LoRA per job; run median 30 s σ=0.5; 60 % ' +
      'utilisation (run time only); 24 h',
    slotsPerMachine: 1,
    cacheBudgetBytes: 100 * GiB,
    downloadBytesPerSecond: 25 * MiB,
    downloadBytesPerSecondMax: 50 * MiB,
    userLoras: 1500,
    sharedLoras: 100,
    sizeMedianBytes: 600 * MiB,
    sizeSigma: 0.8,
    sizeMinBytes: 100 * MiB,
    sizeMaxBytes: 4 * GiB,
    lorasPerJob: [1, 1],
    runMedianMs: 30_000,
    utilisation: 0.6,
  },
  // Two pools, one overloaded (cross-pool overflow, issue 14): pool a gets 55 % of the jobs on a third of the machines.
  P1: {
    ...W1,
    name: 'P1',
    description:
      'W1 fleet and catalogue split in two pools: a = 8 machines × 2 slots taking 55 % of the jobs (about 99 % slot ' +
      'utilisation by run time alone, so over capacity once downloads count), b = 16 machines × 2 slots taking 45 % ' +
      '(about 41 %); 60 % utilisation fleet-wide; 24 h',
    utilisation: 0.6,
    pools: [
      { name: 'a', machines: 8, jobShare: 0.55 },
      { name: 'b', machines: 16, jobShare: 0.45 },
    ],
  },
  D2,
  // Two services with very different run times on a download-heavy fleet (issue 14, item 3: run time per service).
  S1: {
    ...D2,
    name: 'S1',
    description:
      'D2 fleet (16 machines × 1 slot, 60 GiB cache, links 25–50 MiB/s, 800 user + 50 shared LoRAs, Zipf s=0.8, sizes ' +
      'median 300 MiB σ=1 clamped to 50 MiB–3 GiB, 1–2 LoRAs per job) with two services: 80 % `image` (run median ' +
      '10 s) and 20 % `video` (run median 90 s), σ=0.5; 50 % utilisation; 24 h',
    services: [
      { name: 'image', share: 0.8, runMedianMs: 10_000 },
      { name: 'video', share: 0.2, runMedianMs: 90_000 },
    ],
  },
};

/** One LoRA of the catalogue. `ref` is what the scheduler sees; `key` is the machine's cache key. */
export interface SimLora {
  index: number;
  kind: 'user' | 'shared';
  key: string;
  sizeBytes: number;
  ref: LoraRef;
}

export interface SimJobSpec {
  index: number;
  id: string;
  /** Simulated ms since the start. */
  arrivalMs: number;
  runMs: number;
  /** service_required ('default' in one-service workloads). */
  service: string;
  loras: SimLora[];
  /** The job's pool (`spec.pools`); absent = `default`. */
  pool?: string;
}

export interface GeneratedWorkload {
  spec: WorkloadSpec;
  seed: number;
  loras: SimLora[];
  jobs: SimJobSpec[];
  /** utilisation × machines × slots / mean run time. */
  arrivalRatePerSecond: number;
  meanRunSeconds: number;
  /** Mean run time per service, seconds (what the tick learns per service_required). */
  serviceRunSeconds: Readonly<Record<string, number>>;
  /** Mean size of the catalogue's LoRAs (after clamping). */
  meanLoraBytes: number;
  catalogueBytes: number;
}

/** Standard normal deviate (Box–Muller) from a uniform source. */
function normal(random: () => number): number {
  const u = 1 - random(); // (0, 1]
  const v = random();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
}

const idChars = '0123456789abcdefghijklmnopqrstuvwxyz';
/** A contract-shaped id (`<prefix>_` + 26 base-36 chars) whose lexical order is numeric order. */
function paddedId(prefix: string, n: number): string {
  let s = '';
  let x = n;
  do {
    s = idChars[x % 36]! + s;
    x = Math.floor(x / 36);
  } while (x > 0);
  return `${prefix}_${s.padStart(26, '0')}`;
}

/**
 * Generates the catalogue and the job stream. Independent PRNG streams (catalogue, arrivals, LoRA choice, run times)
 * derived from the seed keep each part stable when another changes.
 */
export function generateWorkload(spec: WorkloadSpec, seed: number): GeneratedWorkload {
  validateSpec(spec);
  const stream = (k: number): (() => number) => seededRandom((seed * 0x9e3779b1 + k * 0x85ebca6b) >>> 0);
  const rCatalogue = stream(1);
  const rArrival = stream(2);
  const rChoice = stream(3);
  const rRun = stream(4);
  // Streams are independent per k. No workload has both services and pools; one that does must give rPool a new k
  // (the S1 and P1 tables were measured with these).
  const rService = stream(5);
  const rPool = stream(5);

  const loras: SimLora[] = [];
  const total = spec.userLoras + spec.sharedLoras;
  for (let i = 0; i < total; i++) {
    const kind = i < spec.userLoras ? 'user' : 'shared';
    const key =
      kind === 'user' ? paddedId('lora', i) : `shared-${String(i - spec.userLoras).padStart(4, '0')}.safetensors`;
    const raw = spec.sizeMedianBytes * Math.exp(spec.sizeSigma * normal(rCatalogue));
    const sizeBytes = Math.round(Math.min(spec.sizeMaxBytes, Math.max(spec.sizeMinBytes, raw)));
    loras.push({ index: i, kind, key, sizeBytes, ref: { kind, key, sizeBytes } });
  }
  // Popularity ranking: a seeded shuffle, so user and shared LoRAs mix and size is independent of popularity.
  const ranking = loras.map((_, i) => i);
  for (let i = ranking.length - 1; i > 0; i--) {
    const j = Math.floor(rCatalogue() * (i + 1));
    [ranking[i], ranking[j]] = [ranking[j]!, ranking[i]!];
  }
  const zipf = zipfSampler(total, spec.zipfS, rChoice);
  const half = Math.floor(total / 2);

  const services = spec.services ?? [{ name: 'default', share: 1, runMedianMs: spec.runMedianMs }];
  const shareTotal = services.reduce((a, x) => a + x.share, 0);
  const lognormalMean = (medianMs: number) => (medianMs / 1000) * Math.exp((spec.runSigma * spec.runSigma) / 2);
  const serviceRunSeconds: Record<string, number> = {};
  for (const x of services) serviceRunSeconds[x.name] = lognormalMean(x.runMedianMs);
  const meanRunSeconds = services.reduce((a, x) => a + (x.share / shareTotal) * lognormalMean(x.runMedianMs), 0);
  const slots = spec.machines * spec.slotsPerMachine;
  const arrivalRatePerSecond = (spec.utilisation * slots) / meanRunSeconds;
  const endMs = spec.hours * HOUR_MS;
  const shiftMs = spec.shiftAt !== undefined ? spec.shiftAt * endMs : Infinity;

  const jobs: SimJobSpec[] = [];
  const [minK, maxK] = spec.lorasPerJob;
  let t = 0;
  for (;;) {
    t += (-Math.log(1 - rArrival()) / arrivalRatePerSecond) * 1000;
    if (t >= endMs) break;
    const k = minK + Math.floor(rArrival() * (maxK - minK + 1));
    const chosen: SimLora[] = [];
    const shift = t >= shiftMs ? half : 0;
    while (chosen.length < k) {
      const lora = loras[ranking[(zipf() + shift) % total]!]!;
      if (!chosen.includes(lora)) chosen.push(lora);
    }
    let service = services[0]!;
    if (services.length > 1) {
      let u = rService() * shareTotal;
      for (const x of services) if ((u -= x.share) < 0 || x === services[services.length - 1]) { service = x; break; }
    }
    const runMs = service.runMedianMs * Math.exp(spec.runSigma * normal(rRun));
    const index = jobs.length;
    const pool = spec.pools ? poolOf(spec.pools, rPool()) : undefined;
    jobs.push({ index, id: paddedId('job', index), arrivalMs: t, runMs, service: service.name, loras: chosen, ...(pool ? { pool } : {}) });
  }
  const catalogueBytes = loras.reduce((s, l) => s + l.sizeBytes, 0);
  return {
    spec,
    seed,
    loras,
    jobs,
    arrivalRatePerSecond,
    meanRunSeconds,
    serviceRunSeconds,
    meanLoraBytes: catalogueBytes / total,
    catalogueBytes,
  };
}

/** The pool whose cumulative job share first exceeds `u` (uniform in [0, 1)). */
function poolOf(pools: NonNullable<WorkloadSpec['pools']>, u: number): string {
  let acc = 0;
  for (const p of pools) {
    acc += p.jobShare;
    if (u < acc) return p.name;
  }
  return pools[pools.length - 1]!.name;
}

/** The pool of machine `i` (in `spec.pools` order), or `default`. */
export function machinePool(spec: WorkloadSpec, i: number): string {
  if (!spec.pools) return 'default';
  let end = 0;
  for (const p of spec.pools) {
    end += p.machines;
    if (i < end) return p.name;
  }
  return spec.pools[spec.pools.length - 1]!.name;
}

/** Rejects specs the simulated agent cannot serve (a full machine must always be able to make room for a job). */
export function validateSpec(spec: WorkloadSpec): void {
  const problems: string[] = [];
  if (!(spec.machines >= 1) || !Number.isInteger(spec.machines)) problems.push('machines must be an integer ≥ 1');
  if (!(spec.slotsPerMachine >= 1) || !Number.isInteger(spec.slotsPerMachine)) {
    problems.push('slotsPerMachine must be an integer ≥ 1');
  }
  if (!(spec.downloadBytesPerSecond > 0)) problems.push('downloadBytesPerSecond must be > 0');
  if (!(spec.userLoras + spec.sharedLoras >= spec.lorasPerJob[1])) problems.push('fewer LoRAs than lorasPerJob max');
  if (!(spec.lorasPerJob[0] >= 1 && spec.lorasPerJob[1] >= spec.lorasPerJob[0])) problems.push('bad lorasPerJob');
  if (!(spec.utilisation > 0 && spec.utilisation < 1)) problems.push('utilisation must be in (0, 1)');
  if (!(spec.hours > 0)) problems.push('hours must be > 0');
  if (!(spec.tickMs > 0)) problems.push('tickMs must be > 0');
  if (!(spec.heartbeatMs >= 0)) problems.push('heartbeatMs must be ≥ 0');
  const depth = spec.queueDepth ?? 0;
  if (!(depth >= 0) || !Number.isInteger(depth)) problems.push('queueDepth must be an integer ≥ 0');
  // Every slot and queue position held by a job whose LoRAs are all the largest: that much is in use and cannot be evicted.
  const worstInUse = (spec.slotsPerMachine + depth) * spec.lorasPerJob[1] * spec.sizeMaxBytes;
  if (worstInUse > spec.cacheBudgetBytes) {
    problems.push(`cache budget ${spec.cacheBudgetBytes} B < (slots + queue depth) × max LoRAs per job × max size = ${worstInUse} B`);
  }
  if (spec.pools) {
    if (spec.pools.reduce((n, p) => n + p.machines, 0) !== spec.machines) problems.push('pools must share out exactly `machines`');
    if (Math.abs(spec.pools.reduce((n, p) => n + p.jobShare, 0) - 1) > 1e-9) problems.push('pool job shares must sum to 1');
  }
  if (problems.length > 0) throw new Error(`Invalid workload ${spec.name}: ${problems.join('; ')}`);
}

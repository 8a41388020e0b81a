// Deterministic synthetic scheduler inputs for the benchmark, the simulator's workloads and the scheduler tests.
// Test scaffolding: kept out of functions/ so the Functions package does not ship it.
import type { LoraRef, MachineState, PendingJob } from '../functions/core/scheduler/index.js';

/** mulberry32: a tiny seeded PRNG, uniform in [0, 1). */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Samples indices 0..n-1 with probability ∝ 1/(i+1)^s (a few hot keys, a long tail). */
export function zipfSampler(n: number, s: number, random: () => number): () => number {
  const cdf = new Float64Array(n);
  let sum = 0;
  for (let i = 0; i < n; i++) {
    sum += 1 / Math.pow(i + 1, s);
    cdf[i] = sum;
  }
  return () => {
    const x = random() * sum;
    let lo = 0;
    let hi = n - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cdf[mid]! < x) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
}

export interface SyntheticOptions {
  seed: number;
  jobs: number;
  machines: number;
  /** Pool names and their share of machines and jobs. */
  pools?: { name: string; share: number }[];
  userKeys?: number;
  sharedKeys?: number;
  /** LoRAs in each machine's cache (about). */
  cachedPerMachine?: number;
  /** Slots per machine, uniform in [min, max]. */
  slots?: [number, number];
  /** Popularity skew of LoRA keys (Zipf exponent; 0 = uniform). */
  zipf?: number;
  /** Fraction of machines dead / draining. */
  dead?: number;
  draining?: number;
  nowMs?: number;
}

export interface SyntheticInput {
  nowMs: number;
  jobs: PendingJob[];
  machines: MachineState[];
}

const MB = 1024 * 1024;

/** The benchmark's world: mixed pools, 1–3 LoRAs per job from a few thousand keys, ~200 cached LoRAs per machine. */
export function syntheticInput(options: SyntheticOptions): SyntheticInput {
  const random = seededRandom(options.seed);
  const pools = options.pools ?? [
    { name: 'standard', share: 0.6 },
    { name: 'heavy', share: 0.25 },
    { name: 'fast', share: 0.15 },
  ];
  const userKeys = options.userKeys ?? 3000;
  const sharedKeys = options.sharedKeys ?? 200;
  const cachedPerMachine = options.cachedPerMachine ?? 200;
  const [minSlots, maxSlots] = options.slots ?? [1, 4];
  const nowMs = options.nowMs ?? 1_700_000_000_000;
  const int = (lo: number, hi: number): number => lo + Math.floor(random() * (hi - lo + 1));
  const pickPool = (): string => {
    let x = random();
    for (const p of pools) {
      if (x < p.share) return p.name;
      x -= p.share;
    }
    return pools[pools.length - 1]!.name;
  };

  const loras: LoraRef[] = [];
  for (let i = 0; i < userKeys; i++) {
    loras.push({ kind: 'user', key: `lora_u${String(i).padStart(6, '0')}`, sizeBytes: int(20, 400) * MB });
  }
  for (let i = 0; i < sharedKeys; i++) {
    loras.push({ kind: 'shared', key: `shared-${String(i).padStart(4, '0')}.safetensors`, sizeBytes: int(50, 800) * MB });
  }
  // Shuffle so user and shared keys mix in the popularity ranking.
  for (let i = loras.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [loras[i], loras[j]] = [loras[j]!, loras[i]!];
  }
  const popular = zipfSampler(loras.length, options.zipf ?? 0.9, random);

  const machines: MachineState[] = [];
  for (let i = 0; i < options.machines; i++) {
    const slots = int(minSlots, maxSlots);
    const cachedUser = new Set<string>();
    const cachedShared = new Set<string>();
    let usedBytes = 0;
    for (let k = 0; k < cachedPerMachine; k++) {
      const l = loras[popular()]!;
      const set = l.kind === 'user' ? cachedUser : cachedShared;
      if (!set.has(l.key)) {
        set.add(l.key);
        usedBytes += l.sizeBytes;
      }
    }
    const r = random();
    machines.push({
      id: `gpu-${String(i).padStart(4, '0')}`,
      pool: pickPool(),
      slots,
      busySlots: int(0, slots),
      live: r >= (options.dead ?? 0.02),
      draining: r >= (options.dead ?? 0.02) && r < (options.dead ?? 0.02) + (options.draining ?? 0.02),
      cachedUser,
      cachedShared,
      budgetBytes: 50 * 1024 * MB,
      usedBytes,
      downloadBytesPerSecond: random() < 0.2 ? 0 : int(20, 200) * MB,
    });
  }

  const jobs: PendingJob[] = [];
  for (let i = 0; i < options.jobs; i++) {
    const count = int(1, 3);
    const needs: LoraRef[] = [];
    for (let k = 0; k < count; k++) needs.push(loras[popular()]!);
    const attempt = random() < 0.9 ? 1 : int(2, 3);
    const job: PendingJob = {
      id: `job_${String(i).padStart(6, '0')}`,
      tenantId: `tenant-${int(0, 99)}`,
      pool: pickPool(),
      priority: int(0, 9),
      createdAtMs: nowMs - int(0, 600_000),
      attempt,
      loras: needs,
    };
    if (attempt > 1) {
      job.notBeforeMs = nowMs + int(-5_000, 5_000);
      job.avoidMachines = [machines[int(0, machines.length - 1)]!.id];
    }
    jobs.push(job);
  }
  return { nowMs, jobs, machines };
}

/** A machine with sensible defaults (live, idle, 1 slot, pool `standard`, empty cache), for tests and the simulator. */
export function makeMachine(
  id: string,
  overrides: Partial<Omit<MachineState, 'cachedUser' | 'cachedShared'>> & {
    cachedUser?: Iterable<string>;
    cachedShared?: Iterable<string>;
  } = {},
): MachineState {
  const { cachedUser, cachedShared, ...rest } = overrides;
  return {
    id,
    pool: 'standard',
    slots: 1,
    busySlots: 0,
    live: true,
    draining: false,
    budgetBytes: 50 * 1024 * MB,
    usedBytes: 0,
    downloadBytesPerSecond: 0,
    ...rest,
    cachedUser: new Set(cachedUser ?? []),
    cachedShared: new Set(cachedShared ?? []),
  };
}

/** A pending job with sensible defaults (pool `standard`, priority 5, first attempt, no LoRAs). */
export function makeJob(id: string, overrides: Partial<PendingJob> = {}): PendingJob {
  return { id, tenantId: 'tenant-1', pool: 'standard', priority: 5, createdAtMs: 0, attempt: 1, loras: [], ...overrides };
}

/** A user LoRA reference (default 100 MiB). */
export function userLora(key: string, sizeBytes = 100 * MB): LoraRef {
  return { kind: 'user', key, sizeBytes };
}

/** A shared LoRA reference (default 100 MiB). */
export function sharedLora(key: string, sizeBytes = 100 * MB): LoraRef {
  return { kind: 'shared', key, sizeBytes };
}

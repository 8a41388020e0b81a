// Figures of one simulated run: cache hits, bytes against the compulsory bound, evictions and thrash, score > 0,
// submit→start latency and load balance. Pure functions of the run record, so equal records give equal JSON.
import { resolveWeights, type Weights } from '../functions/core/scheduler/index.js';
import type { RunRecord } from './engine.js';
import type { GeneratedWorkload } from './workloads.js';

export interface LatencySummary {
  /** Seconds. */
  mean: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
}

export interface PolicyMetrics {
  policy: string;
  /** Resolved weights the policy ran with (fifo uses none). */
  weights: Weights | null;
  jobs: number;
  jobsStarted: number;
  /** Per required LoRA: complete on the machine when the job got there. */
  hitRateLora: number;
  /** Per job: every required LoRA was a hit. */
  hitRateJob: number;
  loraRequests: number;
  loraHits: number;
  /** Required LoRAs that another job on the same machine was already downloading (no new bytes, still a wait). */
  loraJoined: number;
  loraMisses: number;
  bytesDownloaded: number;
  /** Sum of the sizes of the distinct LoRAs ever requested: each downloaded once for the whole fleet. */
  compulsoryBytes: number;
  bytesRatio: number;
  downloads: number;
  evictions: number;
  /** Evicted, then downloaded again on the same machine within an hour. */
  thrash: number;
  evictionsPerDownload: number;
  thrashPerDownload: number;
  /** Share of jobs whose chosen machine reported at least one of their LoRAs (ADR-010 score > 0). */
  scoredShare: number;
  /** Share of jobs whose policy score for the chosen machine was > 0 (fifo: always 1; affinity can be negative). */
  policyScoredShare: number;
  /** Submit → start (all LoRAs present, the job begins running). */
  startLatency: LatencySummary;
  /** Submit → assignment (tick wait + wait for a free slot). */
  queueWait: LatencySummary;
  /** Assignment → start (downloads). */
  downloadWait: LatencySummary;
  /** Submit → start of jobs whose LoRAs were all hits, and of the others. */
  startLatencyHitJobs: LatencySummary;
  startLatencyMissJobs: LatencySummary;
  load: {
    /** Coefficient of variation of jobs per machine. */
    jobsPerMachineCv: number;
    /** Busiest machine's slot-time (downloads + runs) over the mean machine's. */
    busyMaxOverMean: number;
    /** Slot-time held by jobs over the fleet's slot-time until the last job ended. */
    slotUtilisation: number;
  };
  /** Highest cache bytes (with reservations) seen on any machine, and the budget. */
  peakCacheBytes: number;
  cacheBudgetBytes: number;
  schedulerCalls: number;
  simulatedHours: number;
}

/** Nearest-rank quantile of an ascending array. */
export function quantile(sorted: ArrayLike<number>, q: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[i]!;
}

function summarizeLatency(values: Float64Array): LatencySummary {
  const sorted = Float64Array.from(values).sort();
  let sum = 0;
  for (const v of sorted) sum += v;
  const n = sorted.length;
  return {
    mean: round(n > 0 ? sum / n / 1000 : NaN),
    p50: round(quantile(sorted, 0.5) / 1000),
    p95: round(quantile(sorted, 0.95) / 1000),
    p99: round(quantile(sorted, 0.99) / 1000),
    max: round(n > 0 ? sorted[n - 1]! / 1000 : NaN),
  };
}

/** Fixed precision so the JSON is stable and readable (the values are deterministic anyway). */
function round(x: number, digits = 6): number {
  if (!Number.isFinite(x)) return x;
  return Number(x.toPrecision(digits));
}

/** Sum of the sizes of the distinct LoRAs the workload's jobs request. */
export function compulsoryBytes(workload: GeneratedWorkload): number {
  const seen = new Uint8Array(workload.loras.length);
  let bytes = 0;
  for (const job of workload.jobs) {
    for (const l of job.loras) {
      if (seen[l.index] === 0) {
        seen[l.index] = 1;
        bytes += l.sizeBytes;
      }
    }
  }
  return bytes;
}

/**
 * The best any policy can do on the workload. Hit rates: every LoRA's first request in the whole run must be a download
 * (compulsory miss), every later one could in principle be a hit; a job can be a full hit only if none of its LoRAs is
 * requested for the first time. Bytes: each distinct LoRA downloaded once (ratio 1). Latency: submit→start when
 * downloads take no time, which leaves only the wait for the next tick and for a free slot; the caller measures it
 * with a run at infinite bandwidth (`latencyFloor`), where every policy gives the same figures.
 */
export interface BestPossible {
  hitRateLora: number;
  hitRateJob: number;
  compulsoryBytes: number;
  bytesRatio: 1;
  startLatency: LatencySummary | null;
}

export function bestPossible(workload: GeneratedWorkload, latencyFloor?: RunRecord): BestPossible {
  const seen = new Uint8Array(workload.loras.length);
  let requests = 0;
  let firsts = 0;
  let fullHitJobs = 0;
  for (const job of workload.jobs) {
    let first = false;
    for (const l of job.loras) {
      requests++;
      if (seen[l.index] === 0) {
        seen[l.index] = 1;
        firsts++;
        first = true;
      }
    }
    if (!first) fullHitJobs++;
  }
  let startLatency: LatencySummary | null = null;
  if (latencyFloor) {
    const start = new Float64Array(latencyFloor.jobs);
    for (let j = 0; j < latencyFloor.jobs; j++) start[j] = latencyFloor.startMs[j]! - latencyFloor.arrivalMs[j]!;
    startLatency = summarizeLatency(start);
  }
  return {
    hitRateLora: round(requests > 0 ? 1 - firsts / requests : NaN),
    hitRateJob: round(workload.jobs.length > 0 ? fullHitJobs / workload.jobs.length : NaN),
    compulsoryBytes: compulsoryBytes(workload),
    bytesRatio: 1,
    startLatency,
  };
}

export function summarize(workload: GeneratedWorkload, rec: RunRecord): PolicyMetrics {
  const n = rec.jobs;
  const start = new Float64Array(n);
  const queue = new Float64Array(n);
  const download = new Float64Array(n);
  let hitJobs = 0;
  for (let j = 0; j < n; j++) if (rec.fullHit[j]) hitJobs++;
  const hitStart = new Float64Array(hitJobs);
  const missStart = new Float64Array(n - hitJobs);
  let started = 0;
  let scored = 0;
  let policyScored = 0;
  let h = 0;
  let m = 0;
  for (let j = 0; j < n; j++) {
    if (rec.starts[j]) started++;
    if (rec.adrScored[j]) scored++;
    if (rec.policyScored[j]) policyScored++;
    const s = rec.startMs[j]! - rec.arrivalMs[j]!;
    start[j] = s;
    queue[j] = rec.assignedMs[j]! - rec.arrivalMs[j]!;
    download[j] = rec.startMs[j]! - rec.assignedMs[j]!;
    if (rec.fullHit[j]) hitStart[h++] = s;
    else missStart[m++] = s;
  }

  let bytes = 0;
  let downloads = 0;
  let evictions = 0;
  let thrash = 0;
  let busySum = 0;
  let busyMax = 0;
  let slotSum = 0;
  let peak = 0;
  const perMachine: number[] = [];
  for (const mc of rec.machines) {
    bytes += mc.bytesDownloaded;
    downloads += mc.downloads;
    evictions += mc.evictions;
    thrash += mc.thrash;
    busySum += mc.busyMs;
    busyMax = Math.max(busyMax, mc.busyMs);
    slotSum += mc.slots;
    peak = Math.max(peak, mc.peakUsedBytes);
    perMachine.push(mc.jobs);
  }
  const meanJobs = perMachine.reduce((s, x) => s + x, 0) / perMachine.length;
  const variance = perMachine.reduce((s, x) => s + (x - meanJobs) ** 2, 0) / perMachine.length;
  const compulsory = compulsoryBytes(workload);
  const machines = rec.machines.length;

  return {
    policy: rec.policy,
    weights: rec.policy === 'fifo' ? null : resolveWeights(rec.weights, rec.extensions?.scorers),
    jobs: n,
    jobsStarted: started,
    hitRateLora: round(rec.loraRequests > 0 ? rec.loraHits / rec.loraRequests : NaN),
    hitRateJob: round(n > 0 ? hitJobs / n : NaN),
    loraRequests: rec.loraRequests,
    loraHits: rec.loraHits,
    loraJoined: rec.loraJoined,
    loraMisses: rec.loraMisses,
    bytesDownloaded: bytes,
    compulsoryBytes: compulsory,
    bytesRatio: round(compulsory > 0 ? bytes / compulsory : NaN),
    downloads,
    evictions,
    thrash,
    evictionsPerDownload: round(downloads > 0 ? evictions / downloads : 0),
    thrashPerDownload: round(downloads > 0 ? thrash / downloads : 0),
    scoredShare: round(n > 0 ? scored / n : NaN),
    policyScoredShare: round(n > 0 ? policyScored / n : NaN),
    startLatency: summarizeLatency(start),
    queueWait: summarizeLatency(queue),
    downloadWait: summarizeLatency(download),
    startLatencyHitJobs: summarizeLatency(hitStart),
    startLatencyMissJobs: summarizeLatency(missStart),
    load: {
      jobsPerMachineCv: round(meanJobs > 0 ? Math.sqrt(variance) / meanJobs : 0),
      busyMaxOverMean: round(busySum > 0 ? busyMax / (busySum / machines) : 0),
      slotUtilisation: round(rec.endMs_ > 0 ? busySum / (slotSum * rec.endMs_) : 0),
    },
    peakCacheBytes: peak,
    cacheBudgetBytes: workload.spec.cacheBudgetBytes,
    schedulerCalls: rec.schedulerCalls,
    simulatedHours: round(rec.endMs_ / 3_600_000),
  };
}

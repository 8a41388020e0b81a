// Runs policies over one generated workload and collects metrics and wall times.
import { performance } from 'node:perf_hooks';
import type { SchedulerExtensions, WeightOverrides } from '../functions/core/scheduler/index.js';
import { simulate, type EngineHooks, type RunRecord } from './engine.js';
import { summarize, type PolicyMetrics } from './metrics.js';
import type { PolicyTiming } from './report.js';
import type { GeneratedWorkload } from './workloads.js';
import type { EvictionExperiment } from './eviction-orders.js';

export interface PolicyRun {
  /** Label in the report: the policy name, or a variant name for tuning runs. */
  label: string;
  policy: string;
  weights?: WeightOverrides;
  /** Experiment-only scheduler additions (extensions.ts). */
  extensions?: SchedulerExtensions;
  /** Experiments only: the caches' eviction order (eviction-orders.ts). */
  eviction?: EvictionExperiment;
}

export interface RunOptions {
  checkInvariants?: boolean;
  hooks?: (run: PolicyRun) => EngineHooks | undefined;
  onDone?: (metrics: PolicyMetrics, timing: PolicyTiming) => void;
}

/** Downloads this fast take no time (about 1 µs for the largest LoRA): only tick and slot waits are left. */
const INSTANT_BYTES_PER_SECOND = 1e15;

/**
 * The latency floor: the workload with instant downloads under fifo. No policy can start jobs sooner, since without
 * download time every work-conserving policy keeps the same slots busy for the same time (all three give identical
 * latencies there); what is left is the wait for the next tick and for a free slot.
 */
export function latencyFloorRun(workload: GeneratedWorkload): RunRecord {
  const spec = { ...workload.spec, downloadBytesPerSecond: INSTANT_BYTES_PER_SECOND, downloadBytesPerSecondMax: undefined };
  return simulate({ ...workload, spec }, { policy: 'fifo' });
}

export function runPolicies(
  workload: GeneratedWorkload,
  runs: readonly PolicyRun[],
  options: RunOptions = {},
): { metrics: PolicyMetrics[]; timing: PolicyTiming[] } {
  const metrics: PolicyMetrics[] = [];
  const timing: PolicyTiming[] = [];
  for (const run of runs) {
    const t0 = performance.now();
    const hooks = options.hooks?.(run);
    const record = simulate(workload, {
      policy: run.policy,
      ...(run.weights ? { weights: run.weights } : {}),
      ...(run.extensions ? { extensions: run.extensions } : {}),
      ...(run.eviction ? { eviction: run.eviction } : {}),
      ...(options.checkInvariants ? { checkInvariants: true } : {}),
      ...(hooks ? { hooks } : {}),
    });
    const m = { ...summarize(workload, record), policy: run.label };
    const t: PolicyTiming = {
      policy: run.label,
      wallSeconds: Number(((performance.now() - t0) / 1000).toFixed(2)),
      schedulerSeconds: Number((record.schedulerWallMs / 1000).toFixed(2)),
    };
    metrics.push(m);
    timing.push(t);
    options.onDone?.(m, t);
  }
  return { metrics, timing };
}

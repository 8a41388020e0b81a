// The scheduler core: pure, host-free job → machine routing. Used by the scheduler timer, the simulator and the bench.
export type {
  Assignment,
  LoraRef,
  OverflowNote,
  MachineState,
  PendingJob,
  RunnerUp,
  ScheduleResult,
  SchedulerInput,
  UnassignedReason,
  WeightOverrides,
} from './types.js';
export {
  DEFAULT_DOWNLOAD_BYTES_PER_SECOND,
  DEFAULT_EXPECTED_JOB_SECONDS,
  DEFAULT_POLICY,
  DEFAULT_WEIGHTS,
  assertPolicyName,
  isPolicyName,
  policyNames,
  resolveWeights,
  weightNames,
  type PolicyName,
  type Weights,
} from './weights.js';
export { SCORERS } from './registry.js';
export { defineScorer, type Fit, type ScoreContext, type Scorer } from './scorers/scorer.js';
export type { SchedulerExtensions } from './pass.js';
export { schedule } from './scheduler.js';
export { estimateWaitSeconds, poolLoads, type PoolLoad } from './pool-wait.js';
export { overflowRoutesSetting, parseOverflowRoutes, type OverflowRoutes } from './overflow-config.js';
export {
  overflowCandidates,
  overflowOn,
  pendingByPoolOf,
  scheduleWithOverflow,
  widenToOverflowPools,
  type PoolOverflow,
} from './overflow.js';

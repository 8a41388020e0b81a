// Test-only entry point of the scheduler: the affinity policy scores every machine of the pool instead of pruning its
// walk with the scorers' upper bounds. Tests compare both on random inputs; production config cannot reach this.
import { runPass, type SchedulerExtensions } from '../functions/core/scheduler/pass.js';
import type { ScheduleResult, SchedulerInput } from '../functions/core/scheduler/index.js';

export function scheduleExhaustive(input: SchedulerInput, extensions: SchedulerExtensions = {}): ScheduleResult {
  return runPass(input, extensions, true);
}

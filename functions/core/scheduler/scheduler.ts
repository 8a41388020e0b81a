// The scheduler's entry point: filters → weighted scorers → picker, under a named policy. Pure: no I/O, no clock (time
// is `input.nowMs`), no randomness; the same input always gives the same output. Layout (docs/scheduler.md):
//   order.ts       routing order (priority, age, id) and the first-k selection
//   state.ts       the pass's state: slots as they are consumed, pools, the assignments' arriving LoRAs
//   holders.ts     the pass's LoRA holder index (which machines cache each key the pass needs)
//   candidates.ts  candidate index: the holders a job scores, HRW homes, the least-loaded walk, the bounded-load cap
//   scorers/*.ts   one affinity scorer per file (score + upper bound); registry.ts lists them; weights.ts derives
//                  `Weights`, `DEFAULT_WEIGHTS` and the validation of SCHEDULER_WEIGHTS from the registry
//   delay.ts       the affinity delay rule
//   policies/*.ts  fifo, adr010, affinity
//   pass.ts        one pass: set-asides, routing order, policy per job, assignments
//   overflow.ts    cross-pool overflow (POOL_OVERFLOW): jobs of an overloaded pool widened to their listed pools after
//                  the home pass; pool-wait.ts is the expected wait it compares (the one GET /api/pools shows)
import { runPass, type SchedulerExtensions } from './pass.js';
import type { ScheduleResult, SchedulerInput } from './types.js';

/**
 * Runs one scheduling pass. Throws on an unknown policy or invalid weights (see `policyNames`, `weightNames`).
 * `extensions` are for experiments (the simulator registers its extra scorers there); production passes none.
 */
export function schedule(input: SchedulerInput, extensions: SchedulerExtensions = {}): ScheduleResult {
  return runPass(input, extensions, false);
}

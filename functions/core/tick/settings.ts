// The scheduler's app settings, validated against the scheduler core itself (its policy names and weight names), so a
// typo in SCHEDULER_POLICY or SCHEDULER_WEIGHTS stops the app at startup with the setting named, instead of failing
// every timer tick.
import { ConfigError, SETTINGS, type Config } from '../config.js';
import { assertPolicyName, resolveWeights, type PolicyName, type Weights } from '../scheduler/index.js';

export interface SchedulerSettings {
  policy: PolicyName;
  weights: Weights;
}

/** Throws ConfigError naming SCHEDULER_POLICY or SCHEDULER_WEIGHTS when the scheduler core refuses them. */
export function schedulerSettings(config: Pick<Config, 'schedulerPolicy' | 'schedulerWeights'>): SchedulerSettings {
  let policy: PolicyName;
  try {
    policy = assertPolicyName(config.schedulerPolicy);
  } catch (err) {
    throw new ConfigError(`Invalid app setting ${SETTINGS.schedulerPolicy}: ${(err as Error).message}`);
  }
  let weights: Weights;
  try {
    weights = resolveWeights(config.schedulerWeights);
  } catch (err) {
    throw new ConfigError(`Invalid app setting ${SETTINGS.schedulerWeights}: ${(err as Error).message}`);
  }
  return { policy, weights };
}

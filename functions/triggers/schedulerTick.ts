// Timer: one scheduler pass (see functions/core/tick/tick.ts). Schedule from the SCHEDULER_SCHEDULE app setting.
import { app } from '@azure/functions';
import '../host-setup.js';
import { coreDeps } from '../core/deps.js';
import { getConfig } from '../core/config.js';
import { getServices } from '../core/services.js';
import { schedulerSettings } from '../core/tick/settings.js';
import { runSchedulerTick } from '../core/tick/tick.js';
import { runPrewarmPass } from '../core/tick/prewarm-pass.js';

// Fail at startup, naming the setting, when SCHEDULER_POLICY or SCHEDULER_WEIGHTS is not one the scheduler accepts.
schedulerSettings(getConfig());

app.timer('schedulerTick', {
  schedule: '%SCHEDULER_SCHEDULE%',
  useMonitor: false,
  handler: async (_timer, context) => {
    const services = getServices();
    const result = await runSchedulerTick(coreDeps(services));
    if (result.planned > 0 || result.lost_races > 0 || result.send_failures > 0) {
      services.log.info({ fn: context.functionName, ...result }, 'scheduler tick');
    }
    // Predictive pre-warm hints (PREWARM_HINTS, off by default): after the pass, so placement never waits on it.
    if (services.config.prewarmHints) {
      try {
        const pre = await runPrewarmPass(coreDeps(services));
        if (pre.hints.length > 0) services.log.info({ fn: context.functionName, hints: pre.hints.map((h) => `${h.key}→${h.machineId}`) }, 'pre-warm hints');
      } catch (err) {
        services.log.warn({ err: (err as Error).message }, 'pre-warm pass failed');
      }
    }
  },
});

// Timer: takes jobs back from lost machines and re-routes unclaimed ones (see functions/core/tick/reaper.ts).
import { app } from '@azure/functions';
import '../host-setup.js';
import { coreDeps } from '../core/deps.js';
import { getServices } from '../core/services.js';
import { runReaper } from '../core/tick/reaper.js';

app.timer('reaper', {
  schedule: '%REAPER_SCHEDULE%',
  useMonitor: false,
  handler: async (_timer, context) => {
    const services = getServices();
    const { actions, ...counts } = await runReaper(coreDeps(services));
    if (actions.length > 0) services.log.info({ fn: context.functionName, ...counts }, 'reaper');
  },
});

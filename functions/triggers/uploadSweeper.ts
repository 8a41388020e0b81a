// Timer: removes upload sessions that expired without a file (record and blob), validates expired sessions whose
// file did arrive, re-runs validations that were interrupted and removes rejected records past their retention
// (functions/core/loras/sweeper.ts).
import { app } from '@azure/functions';
import '../host-setup.js';
import { loraDeps } from '../core/loras/deps.js';
import { sweepUploads } from '../core/loras/sweeper.js';
import { getServices } from '../core/services.js';

app.timer('uploadSweeper', {
  schedule: '0 */5 * * * *',
  useMonitor: false,
  handler: async (_timer, context) => {
    const services = getServices();
    const report = await sweepUploads(loraDeps(services));
    if (report.expired + report.validated + report.revalidated + report.retired + report.errors > 0) {
      services.log.info({ fn: context.functionName, ...report }, 'upload sweep');
    }
  },
});

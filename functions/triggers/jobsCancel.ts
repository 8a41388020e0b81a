import { app } from '@azure/functions';
import '../host-setup.js';
import { jobViewSchema } from '../../contract/jobs.js';
import { errorContent, json, jsonContent, route } from '../core/http.js';
import { coreDeps } from '../core/deps.js';
import { jobIdParam, jobIdParams } from '../core/jobs/params.js';
import { toJobView } from '../core/jobs/model.js';
import { cancelJob } from '../core/jobs/user-ops.js';
import { describeRoute } from '../core/openapi.js';

describeRoute({
  method: 'delete',
  path: '/jobs/{id}',
  summary:
    'Cancel a job. pending/assigned/running → cancelled; a running job\'s machine is told to stop (heartbeat stop_jobs, events cancel_requested). Idempotent.',
  request: { params: jobIdParams },
  responses: { 200: jsonContent('the cancelled job', jobViewSchema), 409: errorContent('the job already succeeded or failed') },
});

app.http('jobsCancel', {
  route: 'jobs/{id}',
  methods: ['DELETE'],
  authLevel: 'anonymous',
  handler: route({
    auth: ['user'],
    handler: async ({ principal, params, services }) => json(200, toJobView(await cancelJob(coreDeps(services), principal.tenantId, jobIdParam(params)))),
  }),
});

import { app } from '@azure/functions';
import '../host-setup.js';
import { jobViewSchema } from '../../contract/jobs.js';
import { errorContent, json, jsonContent, route } from '../core/http.js';
import { coreDeps } from '../core/deps.js';
import { jobIdParam, jobIdParams } from '../core/jobs/params.js';
import { toJobView } from '../core/jobs/model.js';
import { retryJob } from '../core/jobs/user-ops.js';
import { describeRoute } from '../core/openapi.js';

describeRoute({
  method: 'post',
  path: '/jobs/{id}/retry',
  summary: 'Run a failed or cancelled job again, with a fresh attempt budget (JOB_MAX_ATTEMPTS). LoRAs and quota are checked again.',
  request: { params: jobIdParams },
  responses: {
    200: jsonContent('the job, pending again', jobViewSchema),
    409: errorContent('the job is not failed or cancelled'),
    422: errorContent('a required LoRA is no longer available'),
    429: errorContent('quota_exceeded'),
  },
});

app.http('jobsRetry', {
  route: 'jobs/{id}/retry',
  methods: ['POST'],
  authLevel: 'anonymous',
  handler: route({
    auth: ['user'],
    handler: async ({ principal, params, services }) => json(200, toJobView(await retryJob(coreDeps(services), principal.tenantId, jobIdParam(params)))),
  }),
});

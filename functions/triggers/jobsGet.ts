import { app } from '@azure/functions';
import '../host-setup.js';
import { jobViewSchema } from '../../contract/jobs.js';
import { json, jsonContent, route } from '../core/http.js';
import { coreDeps } from '../core/deps.js';
import { jobIdParam, jobIdParams } from '../core/jobs/params.js';
import { toJobView } from '../core/jobs/model.js';
import { readOwnJob } from '../core/jobs/store.js';
import { describeRoute } from '../core/openapi.js';

describeRoute({
  method: 'get',
  path: '/jobs/{id}',
  summary: 'One of your jobs: status, machine, attempt, epoch, affinity score and its breakdown, cache hits, timestamps, error.',
  request: { params: jobIdParams },
  responses: { 200: jsonContent('the job', jobViewSchema) },
});

app.http('jobsGet', {
  route: 'jobs/{id}',
  methods: ['GET'],
  authLevel: 'anonymous',
  handler: route({
    auth: ['user'],
    handler: async ({ principal, params, services }) => json(200, toJobView(await readOwnJob(coreDeps(services).jobs, principal.tenantId, jobIdParam(params)))),
  }),
});

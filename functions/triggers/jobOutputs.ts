import { app } from '@azure/functions';
import '../host-setup.js';
import { jobOutputListSchema } from '../../contract/outputs.js';
import { errorContent, json, jsonContent, route } from '../core/http.js';
import { coreDeps } from '../core/deps.js';
import { jobIdParam, jobIdParams } from '../core/jobs/params.js';
import { describeRoute } from '../core/openapi.js';
import { listOutputsForOwner } from '../core/outputs/outputs.js';

describeRoute({
  method: 'get',
  path: '/jobs/{id}/outputs',
  summary:
    "One of your jobs' output files (name, size, sha256, content type) with short-lived read URLs (OUTPUT_READ_SAS_MINUTES). Empty until the job succeeds; 404 for another tenant's job or once the outputs expired (OUTPUT_RETENTION_DAYS).",
  request: { params: jobIdParams },
  responses: { 200: jsonContent('the outputs', jobOutputListSchema), 404: errorContent('no such job of yours, or its outputs expired') },
});

app.http('jobOutputs', {
  route: 'jobs/{id}/outputs',
  methods: ['GET'],
  authLevel: 'anonymous',
  handler: route({
    auth: ['user'],
    handler: async ({ principal, params, services }) => json(200, await listOutputsForOwner(coreDeps(services), principal.tenantId, jobIdParam(params))),
  }),
});

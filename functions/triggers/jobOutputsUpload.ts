import { app } from '@azure/functions';
import '../host-setup.js';
import { outputUploadRequestSchema, outputUploadResponseSchema } from '../../contract/outputs.js';
import { errorContent, json, jsonContent, route } from '../core/http.js';
import { coreDeps } from '../core/deps.js';
import { jobIdParam, jobIdParams } from '../core/jobs/params.js';
import { describeRoute } from '../core/openapi.js';
import { requestOutputUploads } from '../core/outputs/outputs.js';

describeRoute({
  method: 'post',
  path: '/jobs/{id}/outputs/uploads',
  summary:
    'Machine: write-only upload URLs for the output files of the attempt it is running (blob names chosen by the server, scoped to tenant/job/epoch). 409 when the epoch is stale; 413 over OUTPUT_MAX_FILES / OUTPUT_MAX_BYTES.',
  request: { params: jobIdParams, body: { content: { 'application/json': { schema: outputUploadRequestSchema } } } },
  responses: {
    200: jsonContent('upload each file to its URL (Put Blob / Put Block List), then report succeeded with the outputs', outputUploadResponseSchema),
    409: errorContent('stale epoch or job not running on this machine: stop this run'),
    413: errorContent('over the per-job output limits'),
  },
});

app.http('jobOutputsUpload', {
  route: 'jobs/{id}/outputs/uploads',
  methods: ['POST'],
  authLevel: 'anonymous',
  handler: route({
    auth: ['machine'],
    body: outputUploadRequestSchema,
    handler: async ({ principal, params, body, services }) => json(200, await requestOutputUploads(coreDeps(services), principal, jobIdParam(params), body)),
  }),
});

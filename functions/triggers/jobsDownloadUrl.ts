import { app } from '@azure/functions';
import '../host-setup.js';
import { downloadUrlRequestSchema, downloadUrlResponseSchema } from '../../contract/jobs.js';
import { errorContent, json, jsonContent, route } from '../core/http.js';
import { coreDeps } from '../core/deps.js';
import { refreshDownloadUrl } from '../core/jobs/download-urls.js';
import { jobIdParam, jobIdParams } from '../core/jobs/params.js';
import { describeRoute } from '../core/openapi.js';

describeRoute({
  method: 'post',
  path: '/jobs/{id}/download-url',
  summary:
    'Machine: a fresh short-lived read URL for one LoRA of a job it is running (claimed at this epoch), for a download that outlasted the URL from the claim. ' +
    '409 when the job is no longer running on this machine at this epoch (cancelled, finished, re-assigned); 404 when the key is not one of the job\'s LoRAs.',
  request: { params: jobIdParams, body: { content: { 'application/json': { schema: downloadUrlRequestSchema } } } },
  responses: {
    200: jsonContent('a fresh URL', downloadUrlResponseSchema),
    404: errorContent('no such job, or the LoRA is not part of it (or was deleted)'),
    409: errorContent('the job is not running on this machine at this epoch: stop the attempt'),
  },
});

app.http('jobsDownloadUrl', {
  route: 'jobs/{id}/download-url',
  methods: ['POST'],
  authLevel: 'anonymous',
  handler: route({
    auth: ['machine'],
    body: downloadUrlRequestSchema,
    handler: async ({ principal, params, body, services }) => json(200, await refreshDownloadUrl(coreDeps(services), principal, jobIdParam(params), body)),
  }),
});

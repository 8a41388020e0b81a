import { app } from '@azure/functions';
import '../host-setup.js';
import { claimRequestSchema, claimResponseSchema } from '../../contract/jobs.js';
import { errorContent, json, jsonContent, route } from '../core/http.js';
import { claimJob } from '../core/jobs/agent-ops.js';
import { coreDeps } from '../core/deps.js';
import { jobIdParam, jobIdParams } from '../core/jobs/params.js';
import { describeRoute } from '../core/openapi.js';

describeRoute({
  method: 'post',
  path: '/jobs/{id}/claim',
  summary:
    'Machine: claim a dispatched job for its epoch. assigned → running; returns the job spec and a short-lived read URL per required LoRA. 409 when the epoch is stale, the job is not assigned to this machine, is cancelled, or this epoch was already claimed (a redelivered dispatch never starts a second run).',
  request: { params: jobIdParams, body: { content: { 'application/json': { schema: claimRequestSchema } } } },
  responses: { 200: jsonContent('claimed: run it', claimResponseSchema), 409: errorContent('stale or duplicate claim: drop the dispatch') },
});

app.http('jobsClaim', {
  route: 'jobs/{id}/claim',
  methods: ['POST'],
  authLevel: 'anonymous',
  handler: route({
    auth: ['machine'],
    body: claimRequestSchema,
    handler: async ({ principal, params, body, services }) => json(200, await claimJob(coreDeps(services), principal, jobIdParam(params), body)),
  }),
});

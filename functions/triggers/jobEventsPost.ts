import { app } from '@azure/functions';
import '../host-setup.js';
import { jobEventInputSchema, jobEventResponseSchema } from '../../contract/jobs.js';
import { errorContent, json, jsonContent, route } from '../core/http.js';
import { postJobEvent } from '../core/jobs/agent-ops.js';
import { placeAfterOutcome } from '../core/tick/placement.js';
import { coreDeps } from '../core/deps.js';
import { jobIdParam, jobIdParams } from '../core/jobs/params.js';
import { describeRoute } from '../core/openapi.js';

describeRoute({
  method: 'post',
  path: '/jobs/{id}/events',
  summary:
    'Machine: report on the attempt it claimed (started, progress, log, succeeded, failed), with its epoch. A duplicate terminal report is a no-op; cancel_requested tells the agent to stop.',
  request: { params: jobIdParams, body: { content: { 'application/json': { schema: jobEventInputSchema } } } },
  responses: { 200: jsonContent('recorded', jobEventResponseSchema), 409: errorContent('stale epoch or job not claimed by this machine: stop this run') },
});

app.http('jobEventsPost', {
  route: 'jobs/{id}/events',
  methods: ['POST'],
  authLevel: 'anonymous',
  handler: route({
    auth: ['machine'],
    body: jobEventInputSchema,
    handler: async ({ principal, params, body, services }) => {
      const deps = coreDeps(services);
      // An outcome frees the run's slot: place the next job now, not at the heartbeat after it (placement.ts).
      return json(200, await postJobEvent(deps, principal, jobIdParam(params), body, (machineId, stored, epoch) => placeAfterOutcome(deps, machineId, stored, epoch)));
    },
  }),
});

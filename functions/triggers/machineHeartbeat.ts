import { app } from '@azure/functions';
import '../host-setup.js';
import { machineIdSchema } from '../../contract/ids.js';
import { heartbeatResponseSchema, heartbeatSchema } from '../../contract/machines.js';
import { z } from '../../contract/zod.js';
import { errorContent, json, jsonContent, parseParam, route } from '../core/http.js';
import { coreDeps } from '../core/deps.js';
import { recordHeartbeat } from '../core/machines/store.js';
import { placeIfSlotFreed } from '../core/tick/placement.js';
import { describeRoute } from '../core/openapi.js';

describeRoute({
  method: 'post',
  path: '/machines/{id}/heartbeat',
  summary:
    'Machine: report inventory and load every 5 s (a machine is live while its last beat is at most MACHINE_LIVENESS_SECONDS old). stop_jobs lists reported jobs that were cancelled or taken away: stop them.',
  request: { params: z.object({ id: machineIdSchema }), body: { content: { 'application/json': { schema: heartbeatSchema } } } },
  responses: { 200: jsonContent('recorded', heartbeatResponseSchema), 409: errorContent('the heartbeat names another pool than the registration') },
});

app.http('machineHeartbeat', {
  route: 'machines/{id}/heartbeat',
  methods: ['POST'],
  authLevel: 'anonymous',
  handler: route({
    auth: ['machine'],
    body: heartbeatSchema,
    handler: async ({ principal, params, body, services }) => {
      const deps = coreDeps(services);
      const machineId = parseParam(machineIdSchema, params.id, `machine ${params.id ?? ''}`);
      // Placement on events: a beat that reports fewer running jobs than the last one freed a slot; fill it now.
      return json(200, await recordHeartbeat(deps, principal, machineId, body, (before, after) => placeIfSlotFreed(deps, before, after)));
    },
  }),
});

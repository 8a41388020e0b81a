import { app } from '@azure/functions';
import '../host-setup.js';
import { machineIdSchema } from '../../contract/ids.js';
import { successSchema } from '../../contract/loras.js';
import { z } from '../../contract/zod.js';
import { errorContent, json, jsonContent, parseParam, route } from '../core/http.js';
import { coreDeps } from '../core/deps.js';
import { deleteMachine } from '../core/machines/admin.js';
import { forgetFleetView } from '../core/tick/placement.js';
import { describeRoute } from '../core/openapi.js';

describeRoute({
  method: 'delete',
  path: '/machines/{id}',
  summary:
    'Admin: deregister a machine: its token stops working and its agent exits (code 78). 409 while jobs are assigned to or running on it: drain it first.',
  request: { params: z.object({ id: machineIdSchema }) },
  responses: { 200: jsonContent('deleted', successSchema), 404: errorContent('no such machine'), 409: errorContent('jobs still on it') },
});

app.http('machinesDelete', {
  route: 'machines/{id}',
  methods: ['DELETE'],
  authLevel: 'anonymous',
  handler: route({
    auth: ['admin'],
    handler: async ({ params, services }) => {
      const deps = coreDeps(services);
      await deleteMachine(deps, parseParam(machineIdSchema, params.id, `machine ${params.id ?? ''}`));
      forgetFleetView(deps); // intake's cached view still shows the machine
      return json(200, { success: true });
    },
  }),
});

import { app } from '@azure/functions';
import '../host-setup.js';
import { machineIdSchema } from '../../contract/ids.js';
import { drainResponseSchema } from '../../contract/machines.js';
import { z } from '../../contract/zod.js';
import { errorContent, json, jsonContent, parseParam, route } from '../core/http.js';
import { coreDeps } from '../core/deps.js';
import { setAdminDrained } from '../core/machines/admin.js';
import { forgetFleetView } from '../core/tick/placement.js';
import { describeRoute } from '../core/openapi.js';

describeRoute({
  method: 'post',
  path: '/machines/{id}/drain',
  summary: 'Admin: stop sending this machine new jobs; running jobs finish and the agent keeps running (undrain to resume). Idempotent.',
  request: { params: z.object({ id: machineIdSchema }) },
  responses: { 200: jsonContent('drain', drainResponseSchema), 404: errorContent('no such machine') },
});

app.http('machinesDrain', {
  route: 'machines/{id}/drain',
  methods: ['POST'],
  authLevel: 'anonymous',
  handler: route({
    auth: ['admin'],
    handler: async ({ params, services }) => {
      const deps = coreDeps(services);
      const doc = await setAdminDrained(deps, parseParam(machineIdSchema, params.id, `machine ${params.id ?? ''}`), true);
      forgetFleetView(deps); // intake's cached view still shows the machine open
      return json(200, { machine_id: doc.machine_id, admin_drained: doc.admin_drained ?? false });
    },
  }),
});

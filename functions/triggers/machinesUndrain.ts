import { app } from '@azure/functions';
import '../host-setup.js';
import { machineIdSchema } from '../../contract/ids.js';
import { drainResponseSchema } from '../../contract/machines.js';
import { z } from '../../contract/zod.js';
import { errorContent, json, jsonContent, parseParam, route } from '../core/http.js';
import { coreDeps } from '../core/deps.js';
import { setAdminDrained } from '../core/machines/admin.js';
import { placeAfterSlotFreed } from '../core/tick/placement.js';
import { describeRoute } from '../core/openapi.js';

describeRoute({
  method: 'post',
  path: '/machines/{id}/undrain',
  summary: 'Admin: let a drained machine take new jobs again. Idempotent.',
  request: { params: z.object({ id: machineIdSchema }) },
  responses: { 200: jsonContent('undrain', drainResponseSchema), 404: errorContent('no such machine') },
});

app.http('machinesUndrain', {
  route: 'machines/{id}/undrain',
  methods: ['POST'],
  authLevel: 'anonymous',
  handler: route({
    auth: ['admin'],
    handler: async ({ params, services }) => {
      const deps = coreDeps(services);
      const doc = await setAdminDrained(deps, parseParam(machineIdSchema, params.id, `machine ${params.id ?? ''}`), false);
      await placeAfterSlotFreed(deps, doc.machine_id); // back in service: jobs waiting for it start now, not at a tick
      return json(200, { machine_id: doc.machine_id, admin_drained: doc.admin_drained ?? false });
    },
  }),
});

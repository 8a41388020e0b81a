import { app } from '@azure/functions';
import '../host-setup.js';
import { machineListSchema } from '../../contract/machines.js';
import { json, jsonContent, route } from '../core/http.js';
import { coreDeps } from '../core/deps.js';
import { listMachines } from '../core/machines/fleet.js';
import { describeRoute } from '../core/openapi.js';

describeRoute({
  method: 'get',
  path: '/machines',
  summary: 'Admin: registered machines with liveness, load and cache state from their last heartbeat.',
  responses: { 200: jsonContent('machines', machineListSchema) },
});

app.http('machinesList', {
  route: 'machines',
  methods: ['GET'],
  authLevel: 'anonymous',
  handler: route({
    auth: ['admin'],
    handler: async ({ services }) => json(200, { machines: await listMachines(coreDeps(services)) }),
  }),
});

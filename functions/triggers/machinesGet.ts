import { app } from '@azure/functions';
import '../host-setup.js';
import { machineIdSchema } from '../../contract/ids.js';
import { machineDetailSchema } from '../../contract/machines.js';
import { z } from '../../contract/zod.js';
import { errorContent, json, jsonContent, parseParam, route } from '../core/http.js';
import { coreDeps } from '../core/deps.js';
import { machineDetail } from '../core/machines/admin.js';
import { describeRoute } from '../core/openapi.js';

describeRoute({
  method: 'get',
  path: '/machines/{id}',
  summary: 'Admin: one machine: what it caches and pins, budget and free disk, agent version, health, its assigned and running jobs, cache orders waiting.',
  request: { params: z.object({ id: machineIdSchema }) },
  responses: { 200: jsonContent('machine', machineDetailSchema), 404: errorContent('no such machine') },
});

app.http('machinesGet', {
  route: 'machines/{id}',
  methods: ['GET'],
  authLevel: 'anonymous',
  handler: route({
    auth: ['admin'],
    handler: async ({ params, services }) =>
      json(200, await machineDetail(coreDeps(services), parseParam(machineIdSchema, params.id, `machine ${params.id ?? ''}`))),
  }),
});

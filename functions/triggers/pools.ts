import { app } from '@azure/functions';
import '../host-setup.js';
import { poolListSchema } from '../../contract/machines.js';
import { json, jsonContent, route } from '../core/http.js';
import { coreDeps } from '../core/deps.js';
import { listPools } from '../core/machines/fleet.js';
import { describeRoute } from '../core/openapi.js';

describeRoute({
  method: 'get',
  path: '/pools',
  summary:
    'Admin: capacity per pool (live machines, slots, busy slots, pending jobs) and the estimated wait for a job submitted now (null when no live machine serves the pool).',
  responses: { 200: jsonContent('pools', poolListSchema) },
});

app.http('pools', {
  route: 'pools',
  methods: ['GET'],
  authLevel: 'anonymous',
  handler: route({
    auth: ['admin'],
    handler: async ({ services }) => json(200, { pools: await listPools(coreDeps(services)) }),
  }),
});

import { app } from '@azure/functions';
import '../host-setup.js';
import { cacheOrderResponseSchema, evictRequestSchema } from '../../contract/machines.js';
import { errorContent, json, jsonContent, route } from '../core/http.js';
import { coreDeps } from '../core/deps.js';
import { orderEvict } from '../core/machines/admin.js';
import { describeRoute } from '../core/openapi.js';

describeRoute({
  method: 'post',
  path: '/machines/evict',
  summary:
    'Admin: drop a LoRA from one machine (machine_id) or from all. Delivered in the next heartbeat answer; the agent skips it while a job uses it or it is pinned.',
  request: { body: { content: { 'application/json': { schema: evictRequestSchema } } } },
  responses: { 200: jsonContent('ordered', cacheOrderResponseSchema), 404: errorContent('no such machine') },
});

app.http('machinesEvict', {
  route: 'machines/evict',
  methods: ['POST'],
  authLevel: 'anonymous',
  handler: route({
    auth: ['admin'],
    body: evictRequestSchema,
    handler: async ({ body, services }) => json(200, { machines: await orderEvict(coreDeps(services), body.lora, body.machine_id) }),
  }),
});

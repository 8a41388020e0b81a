import { app } from '@azure/functions';
import '../host-setup.js';
import { cacheOrderResponseSchema, prewarmRequestSchema } from '../../contract/machines.js';
import { errorContent, json, jsonContent, route } from '../core/http.js';
import { coreDeps } from '../core/deps.js';
import { orderPrewarm } from '../core/machines/admin.js';
import { describeRoute } from '../core/openapi.js';

describeRoute({
  method: 'post',
  path: '/machines/prewarm',
  summary:
    'Admin: download a ready LoRA onto the named machines ahead of demand. Delivered in the next heartbeat answer; the agent fetches it within its budget and never evicts pinned or in-use LoRAs for it.',
  request: { body: { content: { 'application/json': { schema: prewarmRequestSchema } } } },
  responses: { 200: jsonContent('ordered', cacheOrderResponseSchema), 404: errorContent('no such machine or LoRA'), 409: errorContent('the LoRA is not ready') },
});

app.http('machinesPrewarm', {
  route: 'machines/prewarm',
  methods: ['POST'],
  authLevel: 'anonymous',
  handler: route({
    auth: ['admin'],
    body: prewarmRequestSchema,
    handler: async ({ body, services }) => json(200, { machines: await orderPrewarm(coreDeps(services), body.lora, body.machine_ids) }),
  }),
});

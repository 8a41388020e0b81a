import { app } from '@azure/functions';
import '../host-setup.js';
import { loraIdSchema } from '../../contract/ids.js';
import { userLoraSchema } from '../../contract/loras.js';
import { z } from '../../contract/zod.js';
import { json, jsonContent, route } from '../core/http.js';
import { loraDeps } from '../core/loras/deps.js';
import { getUserLora, toUserLoraView } from '../core/loras/library.js';
import { describeRoute } from '../core/openapi.js';

describeRoute({
  method: 'get',
  path: '/user-loras/{id}',
  summary: 'One of your LoRAs. Another user\'s id is a 404, like an unknown one.',
  request: { params: z.object({ id: loraIdSchema }) },
  responses: { 200: jsonContent('the LoRA', userLoraSchema) },
});

app.http('loraGet', {
  route: 'user-loras/{id}',
  methods: ['GET'],
  authLevel: 'anonymous',
  handler: route({
    auth: ['user'],
    handler: async ({ principal, params, services }) =>
      json(200, toUserLoraView(await getUserLora(loraDeps(services), principal.tenantId, params.id))),
  }),
});

import { app } from '@azure/functions';
import '../host-setup.js';
import { userLoraListSchema } from '../../contract/loras.js';
import { json, jsonContent, route } from '../core/http.js';
import { loraDeps } from '../core/loras/deps.js';
import { listUserLoras, toUserLoraView } from '../core/loras/library.js';
import { describeRoute } from '../core/openapi.js';

describeRoute({
  method: 'get',
  path: '/user-loras',
  summary: 'Your LoRAs (only yours), newest first, with status (uploading, validating, ready, rejected) and reject_reason.',
  responses: { 200: jsonContent('your LoRAs', userLoraListSchema) },
});

app.http('lorasList', {
  route: 'user-loras',
  methods: ['GET'],
  authLevel: 'anonymous',
  handler: route({
    auth: ['user'],
    handler: async ({ principal, services }) => {
      const docs = await listUserLoras(loraDeps(services), principal.tenantId);
      return json(200, { loras: docs.map(toUserLoraView) });
    },
  }),
});

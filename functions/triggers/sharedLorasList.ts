import { app } from '@azure/functions';
import '../host-setup.js';
import { sharedLoraListSchema } from '../../contract/loras.js';
import { json, jsonContent, route } from '../core/http.js';
import { loraDeps } from '../core/loras/deps.js';
import { listSharedLoras, toSharedLoraView } from '../core/loras/library.js';
import { describeRoute } from '../core/openapi.js';

describeRoute({
  method: 'get',
  path: '/shared-loras',
  summary: 'Admin: the shared (system) LoRAs, keyed by filename, with their status.',
  responses: { 200: jsonContent('shared LoRAs', sharedLoraListSchema) },
});

app.http('sharedLorasList', {
  route: 'shared-loras',
  methods: ['GET'],
  authLevel: 'anonymous',
  handler: route({
    auth: ['admin'],
    handler: async ({ services }) => json(200, { loras: (await listSharedLoras(loraDeps(services))).map(toSharedLoraView) }),
  }),
});

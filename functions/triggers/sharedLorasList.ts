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
  summary: 'The shared (system) LoRAs, keyed by filename: admins see all with their status, users the ready ones (read-only, to pick for jobs).',
  responses: { 200: jsonContent('shared LoRAs', sharedLoraListSchema) },
});

app.http('sharedLorasList', {
  route: 'shared-loras',
  methods: ['GET'],
  authLevel: 'anonymous',
  handler: route({
    auth: ['user'],
    handler: async ({ principal, services }) => {
      const all = (await listSharedLoras(loraDeps(services))).map(toSharedLoraView);
      return json(200, { loras: principal.role === 'admin' ? all : all.filter((l) => l.status === 'ready') });
    },
  }),
});

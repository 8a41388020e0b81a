import { app } from '@azure/functions';
import '../host-setup.js';
import { userLoraListQuerySchema, userLoraListSchema } from '../../contract/loras.js';
import { errorContent, json, jsonContent, route } from '../core/http.js';
import { loraDeps } from '../core/loras/deps.js';
import { listUserLorasPage } from '../core/loras/library.js';
import { describeRoute } from '../core/openapi.js';

describeRoute({
  method: 'get',
  path: '/user-loras',
  summary:
    'Your LoRAs (only yours), newest first, with status (uploading, validating, ready, rejected) and reject_reason, one page at a time: ' +
    'follow `continuation` until it is null. Rejected LoRAs are listed for REJECTED_LORA_RETENTION_HOURS (default 24), then expire.',
  request: { query: userLoraListQuerySchema },
  responses: { 200: jsonContent('a page of your LoRAs', userLoraListSchema), 400: errorContent('bad limit or continuation') },
});

app.http('lorasList', {
  route: 'user-loras',
  methods: ['GET'],
  authLevel: 'anonymous',
  handler: route({
    auth: ['user'],
    handler: async ({ principal, query, services }) => json(200, await listUserLorasPage(loraDeps(services), principal.tenantId, query)),
  }),
});

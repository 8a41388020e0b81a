import { app } from '@azure/functions';
import '../host-setup.js';
import { loraIdSchema } from '../../contract/ids.js';
import { successSchema } from '../../contract/loras.js';
import { z } from '../../contract/zod.js';
import { json, jsonContent, route } from '../core/http.js';
import { loraDeps } from '../core/loras/deps.js';
import { getUserLora, removeLora } from '../core/loras/library.js';
import { describeRoute } from '../core/openapi.js';

describeRoute({
  method: 'delete',
  path: '/user-loras/{id}',
  summary:
    'Delete one of your LoRAs in any state (an upload in progress is cancelled): the blob and the record go. ' +
    'Deleting again answers 404, as does another user\'s id.',
  request: { params: z.object({ id: loraIdSchema }) },
  responses: { 200: jsonContent('deleted', successSchema) },
});

app.http('loraDelete', {
  route: 'user-loras/{id}',
  methods: ['DELETE'],
  authLevel: 'anonymous',
  handler: route({
    auth: ['user'],
    handler: async ({ principal, params, services }) => {
      const deps = loraDeps(services);
      await removeLora(deps, await getUserLora(deps, principal.tenantId, params.id));
      return json(200, { success: true });
    },
  }),
});

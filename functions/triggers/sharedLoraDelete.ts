import { app } from '@azure/functions';
import '../host-setup.js';
import { sharedFilenameSchema } from '../../contract/ids.js';
import { successSchema } from '../../contract/loras.js';
import { z } from '../../contract/zod.js';
import { json, jsonContent, route } from '../core/http.js';
import { loraDeps } from '../core/loras/deps.js';
import { getSharedLora, removeLora } from '../core/loras/library.js';
import { describeRoute } from '../core/openapi.js';

describeRoute({
  method: 'delete',
  path: '/shared-loras/{filename}',
  summary: 'Admin: delete a shared LoRA (blob and record). Jobs that already hold it keep their copy; new jobs cannot name it.',
  request: { params: z.object({ filename: sharedFilenameSchema }) },
  responses: { 200: jsonContent('deleted', successSchema) },
});

app.http('sharedLoraDelete', {
  route: 'shared-loras/{filename}',
  methods: ['DELETE'],
  authLevel: 'anonymous',
  handler: route({
    auth: ['admin'],
    handler: async ({ params, services }) => {
      const deps = loraDeps(services);
      await removeLora(deps, await getSharedLora(deps, params.filename));
      return json(200, { success: true });
    },
  }),
});

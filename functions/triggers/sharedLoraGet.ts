import { app } from '@azure/functions';
import '../host-setup.js';
import { sharedFilenameSchema } from '../../contract/ids.js';
import { sharedLoraSchema } from '../../contract/loras.js';
import { z } from '../../contract/zod.js';
import { json, jsonContent, route } from '../core/http.js';
import { loraDeps } from '../core/loras/deps.js';
import { getSharedLora, toSharedLoraView } from '../core/loras/library.js';
import { describeRoute } from '../core/openapi.js';

describeRoute({
  method: 'get',
  path: '/shared-loras/{filename}',
  summary: 'Admin: one shared LoRA by filename.',
  request: { params: z.object({ filename: sharedFilenameSchema }) },
  responses: { 200: jsonContent('the shared LoRA', sharedLoraSchema) },
});

app.http('sharedLoraGet', {
  route: 'shared-loras/{filename}',
  methods: ['GET'],
  authLevel: 'anonymous',
  handler: route({
    auth: ['admin'],
    handler: async ({ params, services }) => json(200, toSharedLoraView(await getSharedLora(loraDeps(services), params.filename))),
  }),
});

import { app } from '@azure/functions';
import '../host-setup.js';
import { createSharedUploadRequestSchema, createSharedUploadResponseSchema } from '../../contract/loras.js';
import { errorContent, json, jsonContent, route } from '../core/http.js';
import { loraDeps } from '../core/loras/deps.js';
import { createSharedUploadSession } from '../core/loras/sessions.js';
import { describeRoute } from '../core/openapi.js';

describeRoute({
  method: 'post',
  path: '/shared-loras',
  summary:
    'Admin: start a large-file upload of a shared LoRA keyed by filename: a short-lived create/write SAS for its one blob. ' +
    'The BlobCreated trigger validates it. 409 when the filename is taken (delete first to replace).',
  request: { body: { content: { 'application/json': { schema: createSharedUploadRequestSchema } } } },
  responses: {
    201: jsonContent('upload session created', createSharedUploadResponseSchema),
    409: errorContent('conflict: a shared LoRA with this filename exists'),
  },
});

app.http('sharedLoraCreate', {
  route: 'shared-loras',
  methods: ['POST'],
  authLevel: 'anonymous',
  handler: route({
    auth: ['admin'],
    body: createSharedUploadRequestSchema,
    handler: async ({ body, services }) => {
      const session = await createSharedUploadSession(loraDeps(services), body);
      return json(201, session, { Location: `/api/shared-loras/${encodeURIComponent(session.filename)}` });
    },
  }),
});

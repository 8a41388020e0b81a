import { app } from '@azure/functions';
import '../host-setup.js';
import { createUploadRequestSchema, createUploadResponseSchema } from '../../contract/loras.js';
import { errorContent, json, jsonContent, route } from '../core/http.js';
import { loraDeps } from '../core/loras/deps.js';
import { createUserUploadSession } from '../core/loras/sessions.js';
import { describeRoute } from '../core/openapi.js';

describeRoute({
  method: 'post',
  path: '/user-loras',
  summary:
    'Start a large-file upload: a record in `uploading` and a short-lived SAS URL that can only create/write this one blob. ' +
    'PUT the file there (Put Blob, or Put Block + Put Block List for big files); the BlobCreated trigger validates it and ' +
    'sets `ready` or `rejected` (+ reject_reason). Poll GET /user-loras/{id}. The declared size must match the upload.',
  request: { body: { content: { 'application/json': { schema: createUploadRequestSchema } } } },
  responses: {
    201: jsonContent('upload session created', createUploadResponseSchema),
    429: errorContent('quota_exceeded: USER_MAX_LORAS / USER_MAX_LORA_BYTES (uploads in progress count), with the numbers'),
  },
});

app.http('loraCreate', {
  route: 'user-loras',
  methods: ['POST'],
  authLevel: 'anonymous',
  handler: route({
    auth: ['user'],
    body: createUploadRequestSchema,
    handler: async ({ principal, body, services }) => {
      const session = await createUserUploadSession(loraDeps(services), principal.tenantId, body);
      return json(201, session, { Location: `/api/user-loras/${session.flat_file_id}` });
    },
  }),
});

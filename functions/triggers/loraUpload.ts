import { app } from '@azure/functions';
import '../host-setup.js';
import { directUploadResponseSchema } from '../../contract/loras.js';
import { z } from '../../contract/zod.js';
import { errorContent, json, jsonContent, route } from '../core/http.js';
import { coreDeps } from '../core/deps.js';
import { loraDeps } from '../core/loras/deps.js';
import { hintUploadedLora } from '../core/tick/upload-hint.js';
import { directUpload, nodeBody } from '../core/loras/direct-upload.js';
import { describeRoute } from '../core/openapi.js';

describeRoute({
  method: 'post',
  path: '/user-loras/upload',
  summary:
    'Upload a LoRA (≤ 100 MB) as multipart/form-data part `file` (optional field `size_bytes` before it is checked). Streamed into storage, ' +
    'validated by content before the answer: 201 ready, or 422 with the reason (nothing is kept). Larger files: POST /user-loras.',
  request: {
    body: {
      content: {
        'multipart/form-data': {
          schema: z.object({
            size_bytes: z.string().optional().openapi({ description: 'expected byte count of the file (checked)' }),
            file: z.string().openapi({ type: 'string', format: 'binary', description: 'the .safetensors file' }),
          }),
        },
      },
    },
  },
  responses: {
    201: jsonContent('stored and validated', directUploadResponseSchema),
    413: errorContent('too_large: the file is over 100 MB (use the large-file flow)'),
    422: errorContent('invalid_lora: not a valid safetensors file; the message says why'),
    429: errorContent('quota_exceeded: USER_MAX_LORAS / USER_MAX_LORA_BYTES, with the numbers'),
  },
});

app.http('loraUpload', {
  route: 'user-loras/upload',
  methods: ['POST'],
  authLevel: 'anonymous',
  handler: route({
    auth: ['user'],
    handler: async ({ req, principal, services }) => {
      const length = req.headers.get('content-length');
      const { doc } = await directUpload(loraDeps(services), { kind: 'user', tenantId: principal.tenantId }, {
        contentType: req.headers.get('content-type'),
        contentLength: length !== null && /^\d+$/.test(length) ? Number(length) : null,
        body: nodeBody(req.body),
      });
      await hintUploadedLora(coreDeps(services), doc); // PREWARM_HINTS only; never fails the upload
      return json(
        201,
        {
          flat_file_id: doc.id,
          url: `/api/user-loras/${doc.id}`,
          size_bytes: doc.size_bytes,
          original_name: doc.original_name,
          sha256: doc.sha256,
          status: doc.status,
          reject_reason: doc.reject_reason,
        },
        { Location: `/api/user-loras/${doc.id}` },
      );
    },
  }),
});

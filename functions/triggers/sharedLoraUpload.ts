import { app } from '@azure/functions';
import '../host-setup.js';
import { sharedDirectUploadResponseSchema } from '../../contract/loras.js';
import { z } from '../../contract/zod.js';
import { errorContent, json, jsonContent, route } from '../core/http.js';
import { loraDeps } from '../core/loras/deps.js';
import { directUpload, nodeBody } from '../core/loras/direct-upload.js';
import { describeRoute } from '../core/openapi.js';

describeRoute({
  method: 'post',
  path: '/shared-loras/upload',
  summary:
    'Admin: upload a shared (system) LoRA ≤ 100 MB as multipart part `file`. It is keyed by file name: the part\'s filename, or a ' +
    '`filename` field sent before the file. Validated before the answer (201 ready / 422). 409 when the name is taken.',
  request: {
    body: {
      content: {
        'multipart/form-data': {
          schema: z.object({
            filename: z.string().optional(),
            size_bytes: z.string().optional(),
            file: z.string().openapi({ type: 'string', format: 'binary' }),
          }),
        },
      },
    },
  },
  responses: {
    201: jsonContent('stored and validated', sharedDirectUploadResponseSchema),
    409: errorContent('conflict: a shared LoRA with this filename exists'),
    413: errorContent('too_large: over 100 MB (use POST /shared-loras)'),
    422: errorContent('invalid_lora: not a valid safetensors file'),
  },
});

app.http('sharedLoraUpload', {
  route: 'shared-loras/upload',
  methods: ['POST'],
  authLevel: 'anonymous',
  handler: route({
    auth: ['admin'],
    handler: async ({ req, services }) => {
      const length = req.headers.get('content-length');
      const { doc } = await directUpload(loraDeps(services), { kind: 'shared' }, {
        contentType: req.headers.get('content-type'),
        contentLength: length !== null && /^\d+$/.test(length) ? Number(length) : null,
        body: nodeBody(req.body),
      });
      const url = `/api/shared-loras/${encodeURIComponent(doc.key)}`;
      return json(
        201,
        { filename: doc.key, url, size_bytes: doc.size_bytes, sha256: doc.sha256, status: doc.status, reject_reason: doc.reject_reason },
        { Location: url },
      );
    },
  }),
});

import { app } from '@azure/functions';
import '../host-setup.js';
import { recoverDeadLettersRequestSchema, recoverDeadLettersResponseSchema } from '../../contract/dispatch.js';
import { json, jsonContent, route } from '../core/http.js';
import { recoverDeadLetters } from '../core/jobs/dead-letters.js';
import { coreDeps } from '../core/deps.js';

import { describeRoute } from '../core/openapi.js';

describeRoute({
  method: 'post',
  path: '/dead-letters/recover',
  summary:
    'Admin: re-place every job still assigned at a dead-lettered dispatch (pending again, epoch moved on), then remove those dead letters and the stale ones. message_ids limits it; empty: all listed.',
  request: { body: { content: { 'application/json': { schema: recoverDeadLettersRequestSchema } } } },
  responses: { 200: jsonContent('what was re-placed, removed and kept', recoverDeadLettersResponseSchema) },
});

app.http('deadLettersRecover', {
  route: 'dead-letters/recover',
  methods: ['POST'],
  authLevel: 'anonymous',
  handler: route({
    auth: ['admin'],
    body: recoverDeadLettersRequestSchema,
    handler: async ({ body, services }) => json(200, await recoverDeadLetters(coreDeps(services), body.message_ids)),
  }),
});

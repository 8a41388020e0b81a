import { app } from '@azure/functions';
import '../host-setup.js';
import { deadLetterListSchema } from '../../contract/dispatch.js';
import { json, jsonContent, route } from '../core/http.js';
import { listDeadLetters } from '../core/jobs/dead-letters.js';
import { coreDeps } from '../core/deps.js';

import { describeRoute } from '../core/openapi.js';

describeRoute({
  method: 'get',
  path: '/dead-letters',
  summary:
    'Admin: dispatches the transport gave up on (Service Bus dead-letter queue; the storage transport keeps its own), each with its job and what recovery would do.',
  responses: { 200: jsonContent('up to 100 dead letters, oldest first', deadLetterListSchema) },
});

app.http('deadLettersList', {
  route: 'dead-letters',
  methods: ['GET'],
  authLevel: 'anonymous',
  handler: route({
    auth: ['admin'],
    handler: async ({ services }) => json(200, { dead_letters: await listDeadLetters(coreDeps(services)) }),
  }),
});

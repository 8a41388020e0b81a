import { app } from '@azure/functions';
import '../host-setup.js';
import { z } from '../../contract/zod.js';
import { checkHealth } from '../core/health.js';
import { json, route } from '../core/http.js';
import { describeRoute } from '../core/openapi.js';

const dependency = z.object({ status: z.enum(['up', 'down']), latency_ms: z.number(), error: z.string().optional() });
describeRoute({
  method: 'get',
  path: '/health',
  summary: 'Liveness and dependency status (blob, cosmos, transport). 503 when a dependency is down.',
  anonymous: true,
  responses: {
    200: {
      description: 'all dependencies up',
      content: {
        'application/json': {
          schema: z.object({
            status: z.enum(['ok', 'degraded']),
            mode: z.string(),
            transport: z.string(),
            dependencies: z.object({ blob: dependency, cosmos: dependency, transport: dependency }),
          }),
        },
      },
    },
  },
});

app.http('health', {
  route: 'health',
  methods: ['GET'],
  authLevel: 'anonymous',
  handler: route({
    auth: 'anonymous',
    handler: async ({ services }) => {
      const report = await checkHealth(services);
      return json(report.status === 'ok' ? 200 : 503, report);
    },
  }),
});

import { app } from '@azure/functions';
import '../host-setup.js';
import { z } from '../../contract/zod.js';
import { intQuery, json, jsonContent, route } from '../core/http.js';
import { coreDeps } from '../core/deps.js';
import { computeMetrics } from '../core/machines/fleet.js';
import { describeRoute } from '../core/openapi.js';

const metricsSchema = z
  .object({
    window_hours: z.number().int(),
    jobs_by_status: z.record(z.string(), z.number().int()),
    assignments_by_policy: z.record(z.string(), z.number().int()),
    mean_affinity_score: z.number().nullable(),
    redispatches: z.number().int(),
    cache: z.object({
      hits: z.number().int(),
      misses: z.number().int(),
      hit_rate: z.number().nullable(),
      downloads: z.number().int(),
      bytes_downloaded: z.number().int(),
      evictions: z.number().int(),
      thrash: z.number().int(),
    }),
    machines: z.object({ registered: z.number().int(), live: z.number().int() }),
  })
  .openapi('Metrics');

describeRoute({
  method: 'get',
  path: '/metrics',
  summary:
    'Admin: jobs by status, assignments by policy, mean affinity score and re-dispatches over jobs created in the window (default 24 h); cache hit rate from the machines\' heartbeat counters.',
  request: { query: z.object({ window_hours: z.number().int().min(1).max(720).optional() }) },
  responses: { 200: jsonContent('metrics', metricsSchema) },
});

app.http('metrics', {
  route: 'metrics',
  methods: ['GET'],
  authLevel: 'anonymous',
  handler: route({
    auth: ['admin'],
    handler: async ({ query, services }) => json(200, await computeMetrics(coreDeps(services), intQuery(query, 'window_hours', 24, 1, 720))),
  }),
});

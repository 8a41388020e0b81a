import { app } from '@azure/functions';
import '../host-setup.js';
import { z } from '../../contract/zod.js';
import { intQuery, json, jsonContent, route } from '../core/http.js';
import { coreDeps } from '../core/deps.js';
import { computeMetrics } from '../core/machines/fleet.js';
import { computeSeries, flatSeries, seriesQuery } from '../core/metrics/series.js';
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
    timeseries: z.lazy(() => seriesSchema),
    series: z.lazy(() => flatSeriesSchema),
  })
  .openapi('Metrics');

const rows = z.array(z.record(z.string(), z.unknown()));
const seriesSchema = z
  .object({
    scope: z.enum(['fleet', 'tenant']),
    since: z.string(),
    until: z.string(),
    step_seconds: z.number(),
    resolution: z.enum(['minute', 'hour']),
    hit_rate: rows,
    start_latency: rows,
    jobs: rows,
    score_histogram: z.array(z.object({ le: z.number().nullable(), count: z.number().int() })),
    top_loras: z.object({ by_requests: rows, by_bytes: rows }),
    evictions: rows,
    egress_per_day: rows,
    machines: rows,
    totals: z.record(z.string(), z.number().nullable()),
  })
  .openapi('MetricsSeries');
/** The same numbers as plain line series (name → points), for simple line charts (the web app's Fleet page). */
const flatSeriesSchema = z.record(z.string(), z.array(z.object({ at: z.string(), value: z.number() }))).openapi('MetricsLineSeries');
const tenantMetricsSchema = z.object({ scope: z.literal('tenant'), timeseries: seriesSchema, series: flatSeriesSchema }).openapi('TenantMetrics');

describeRoute({
  method: 'get',
  path: '/metrics',
  summary:
    'Admins: jobs by status, assignments by policy, mean affinity score and re-dispatches over jobs created in the window (default 24 h); cache hit rate from the machines\' heartbeat counters; and `timeseries`, the fleet time series (hit rate, start latency p50/p95 by cache state, score histogram, top LoRAs, evictions/thrash, egress per day, per-machine cache) from `since` (duration such as 7d or an ISO time; default 24h) in steps of `step`. `series` has the same numbers as plain line series (name → [{at, value}]). Users: `{scope: "tenant", timeseries, series}` over their own jobs only.',
  request: {
    query: z.object({
      window_hours: z.number().int().min(1).max(720).optional(),
      since: z.string().optional(),
      step: z.string().optional(),
      top: z.number().int().min(1).max(100).optional(),
    }),
  },
  responses: { 200: jsonContent('metrics (admins) or the tenant view (users)', z.union([metricsSchema, tenantMetricsSchema])) },
});

app.http('metrics', {
  route: 'metrics',
  methods: ['GET'],
  authLevel: 'anonymous',
  handler: route({
    auth: ['user', 'admin'],
    handler: async ({ query, services, principal }) => {
      const deps = coreDeps(services);
      const q = seriesQuery(query, deps.now());
      if (principal.role !== 'admin') {
        const timeseries = await computeSeries(deps, q, principal.tenantId);
        return json(200, { scope: 'tenant', timeseries, series: flatSeries(timeseries) });
      }
      const [metrics, series] = await Promise.all([computeMetrics(deps, intQuery(query, 'window_hours', 24, 1, 720)), computeSeries(deps, q, null)]);
      return json(200, { ...metrics, timeseries: series, series: flatSeries(series) });
    },
  }),
});

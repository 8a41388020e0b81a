import { app } from '@azure/functions';
import '../host-setup.js';
import { jobEventListSchema } from '../../contract/jobs.js';
import { z } from '../../contract/zod.js';
import { badRequest } from '../core/errors.js';
import { errorContent, intQuery, json, jsonContent, route } from '../core/http.js';
import { coreDeps } from '../core/deps.js';
import { eventPage, eventStream, MAX_EVENTS_PAGE } from '../core/jobs/events.js';
import { jobIdParam, jobIdParams } from '../core/jobs/params.js';
import { readOwnJob } from '../core/jobs/store.js';
import { streamLimiter } from '../core/jobs/stream-limits.js';
import { describeRoute } from '../core/openapi.js';

describeRoute({
  method: 'get',
  path: '/jobs/{id}/events',
  summary:
    'Progress and log lines of one of your jobs. JSON page after the `after` cursor; with Accept: text/event-stream a server-sent event stream (one event per entry with id = seq, `status` on every status change, `end` when the job is terminal; resumes from Last-Event-ID).',
  request: { params: jobIdParams, query: z.object({ after: z.number().int().min(0).optional(), limit: z.number().int().min(1).max(MAX_EVENTS_PAGE).optional() }) },
  responses: {
    429: errorContent('too many open event streams (SSE_MAX_STREAMS_PER_TENANT per tenant, SSE_MAX_STREAMS per host instance)'),
    200: {
      description: 'events after the cursor',
      content: { 'application/json': { schema: jobEventListSchema }, 'text/event-stream': { schema: z.string() } },
    },
  },
});

app.http('jobEventsGet', {
  route: 'jobs/{id}/events',
  methods: ['GET'],
  authLevel: 'anonymous',
  handler: route({
    auth: ['user'],
    handler: async ({ req, principal, params, query, services }) => {
      const deps = coreDeps(services);
      const job = await readOwnJob(deps.jobs, principal.tenantId, jobIdParam(params));
      let after = intQuery(query, 'after', 0, 0, Number.MAX_SAFE_INTEGER);
      const wantsStream = /\btext\/event-stream\b/i.test(req.headers.get('accept') ?? '');
      if (!wantsStream) return json(200, await eventPage(deps, job, after, intQuery(query, 'limit', MAX_EVENTS_PAGE, 1, MAX_EVENTS_PAGE)));
      const lastEventId = req.headers.get('last-event-id');
      if (lastEventId) {
        if (!/^\d+$/.test(lastEventId)) throw badRequest('Last-Event-ID must be an event seq');
        after = Math.max(after, Number(lastEventId));
      }
      const release = streamLimiter.acquire(principal.tenantId, { perTenant: deps.config.sseMaxStreamsPerTenant, global: deps.config.sseMaxStreams });
      return {
        status: 200,
        body: eventStream(deps, principal.tenantId, job.id, after, { onClose: release }),
        headers: { 'Content-Type': 'text/event-stream; charset=utf-8', 'Cache-Control': 'no-store', 'X-Accel-Buffering': 'no' },
      };
    },
  }),
});

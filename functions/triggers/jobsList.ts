import { app } from '@azure/functions';
import '../host-setup.js';
import { jobListSchema, jobStatusSchema } from '../../contract/jobs.js';
import { z } from '../../contract/zod.js';
import { badRequest } from '../core/errors.js';
import { intQuery, json, jsonContent, route } from '../core/http.js';
import { coreDeps } from '../core/deps.js';
import { toJobView } from '../core/jobs/model.js';
import { listJobs, MAX_LIST } from '../core/jobs/user-ops.js';
import { describeRoute } from '../core/openapi.js';

describeRoute({
  method: 'get',
  path: '/jobs',
  summary: 'Your jobs, newest first (optionally one status).',
  request: { query: z.object({ status: jobStatusSchema.optional(), limit: z.number().int().min(1).max(MAX_LIST).optional() }) },
  responses: { 200: jsonContent('your jobs', jobListSchema) },
});

app.http('jobsList', {
  route: 'jobs',
  methods: ['GET'],
  authLevel: 'anonymous',
  handler: route({
    auth: ['user'],
    handler: async ({ principal, query, services }) => {
      const raw = query.get('status');
      let status = null;
      if (raw) {
        const parsed = jobStatusSchema.safeParse(raw);
        if (!parsed.success) throw badRequest(`status must be one of ${jobStatusSchema.options.join(', ')}`);
        status = parsed.data;
      }
      const limit = intQuery(query, 'limit', 100, 1, MAX_LIST);
      const docs = await listJobs(coreDeps(services), principal.tenantId, status, limit);
      return json(200, { jobs: docs.map(toJobView) });
    },
  }),
});

import { app } from '@azure/functions';
import '../host-setup.js';
import { jobViewSchema, submitJobRequestSchema, submitJobResponseSchema } from '../../contract/jobs.js';
import { z } from '../../contract/zod.js';
import { errorContent, json, jsonContent, route } from '../core/http.js';
import { coreDeps } from '../core/deps.js';
import { submitJob } from '../core/jobs/intake.js';
import { placeNewJob } from '../core/tick/placement.js';
import { toJobView } from '../core/jobs/model.js';
import { describeRoute } from '../core/openapi.js';

describeRoute({
  method: 'post',
  path: '/jobs',
  summary:
    'Submit a job. Every required LoRA must exist, be ready and be yours (user) or shared. With an Idempotency-Key header a retried request returns the job it created (200) instead of a new one.',
  request: {
    headers: z.object({ 'idempotency-key': z.string().max(200).optional() }),
    body: { content: { 'application/json': { schema: submitJobRequestSchema } } },
  },
  responses: {
    201: jsonContent('job created (pending)', submitJobResponseSchema),
    200: jsonContent('same Idempotency-Key and body as an earlier request: that job', jobViewSchema),
    409: errorContent('conflict: the Idempotency-Key was used with a different body'),
    422: errorContent('invalid_lora / lora_not_ready, naming the LoRA'),
    429: errorContent('quota_exceeded: active jobs reached 90 % of TENANT_MAX_ACTIVE_JOBS'),
  },
});

app.http('jobsSubmit', {
  route: 'jobs',
  methods: ['POST'],
  authLevel: 'anonymous',
  handler: route({
    auth: ['user'],
    body: submitJobRequestSchema,
    handler: async ({ req, principal, body, services }) => {
      const deps = coreDeps(services);
      const outcome = await submitJob(deps, principal.tenantId, body, req.headers.get('idempotency-key'));
      if (!outcome.created) return json(200, toJobView(outcome.doc), { 'Idempotent-Replayed': 'true' });
      // Placement on events: try to place the job now rather than at the timer's next pass.
      const placed = await placeNewJob(deps, outcome.doc);
      const status = placed && placed.assigned > 0 ? 'assigned' : outcome.doc.status;
      return json(201, { job_id: outcome.doc.id, status }, { Location: `/api/jobs/${outcome.doc.id}` });
    },
  }),
});

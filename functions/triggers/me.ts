import { app } from '@azure/functions';
import '../host-setup.js';
import { meSchema, type Me } from '../../contract/me.js';
import { json, jsonContent, route } from '../core/http.js';
import { loraDeps } from '../core/loras/deps.js';
import { userUsage } from '../core/loras/quota.js';
import { describeRoute } from '../core/openapi.js';

describeRoute({
  method: 'get',
  path: '/me',
  summary: 'Who you are (subject, role) and your LoRA quota: LoRAs and bytes held (uploads in progress count) against the limits.',
  responses: { 200: jsonContent('you', meSchema) },
});

app.http('me', {
  route: 'me',
  methods: ['GET'],
  authLevel: 'anonymous',
  handler: route({
    auth: ['user'],
    handler: async ({ principal, services }) => {
      const deps = loraDeps(services);
      const usage = await userUsage(deps, principal.tenantId);
      const me: Me = {
        subject: principal.subject,
        role: principal.role === 'admin' ? 'admin' : 'user',
        quota: { max_loras: deps.config.userMaxLoras, used_loras: usage.count, max_bytes: deps.config.userMaxLoraBytes, used_bytes: usage.bytes },
      };
      return json(200, me);
    },
  }),
});

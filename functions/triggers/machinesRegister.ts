import { app } from '@azure/functions';
import '../host-setup.js';
import { registerMachineRequestSchema, registerMachineResponseSchema } from '../../contract/machines.js';
import { json, jsonContent, route } from '../core/http.js';
import { coreDeps } from '../core/deps.js';
import { registerMachine } from '../core/machines/store.js';
import { describeRoute } from '../core/openapi.js';

describeRoute({
  method: 'post',
  path: '/machines',
  summary: 'Admin: register a GPU machine (201) or re-register it (200), returning its machine token. Re-registering revokes the previous token.',
  request: { body: { content: { 'application/json': { schema: registerMachineRequestSchema } } } },
  responses: { 201: jsonContent('registered', registerMachineResponseSchema), 200: jsonContent('re-registered; earlier tokens revoked', registerMachineResponseSchema) },
});

app.http('machinesRegister', {
  route: 'machines',
  methods: ['POST'],
  authLevel: 'anonymous',
  handler: route({
    auth: ['admin'],
    body: registerMachineRequestSchema,
    handler: async ({ body, services }) => {
      const r = await registerMachine(coreDeps(services), body);
      return json(r.created ? 201 : 200, { machine_id: r.doc.machine_id, pool: r.doc.pool, token: r.token.token, token_version: r.doc.token_version, token_expires_at: r.token.expires_at });
    },
  }),
});

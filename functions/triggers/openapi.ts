import { app } from '@azure/functions';
import '../host-setup.js';
import { json, route } from '../core/http.js';
import { openApiDocument } from '../core/openapi.js';

app.http('openapi', {
  route: 'openapi.json',
  methods: ['GET'],
  authLevel: 'anonymous',
  handler: route({ auth: 'anonymous', handler: async () => json(200, openApiDocument()) }),
});

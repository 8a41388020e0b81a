import { fileURLToPath } from 'node:url';
import { app } from '@azure/functions';
import '../host-setup.js';
import { errorResponse } from '../core/http.js';
import { getServices } from '../core/services.js';
import { webClientConfig } from '../core/web/client-config.js';
import { StaticSite } from '../core/web/static-site.js';

// The built web app (vite → dist/web), next to dist/functions in the deployment package.
const site = new StaticSite(fileURLToPath(new URL('../../web/', import.meta.url)));

app.http('webApp', {
  route: 'app/{*path}',
  methods: ['GET', 'HEAD'],
  authLevel: 'anonymous',
  handler: async (req, context) => {
    const path = req.params.path ?? '';
    if (path === 'config.json') {
      try {
        return { status: 200, jsonBody: webClientConfig(getServices().config), headers: { 'Cache-Control': 'no-cache' } };
      } catch (err) {
        return errorResponse(err, context);
      }
    }
    const res = site.serve(path, req.headers.get('accept-encoding'));
    return { status: res.status, headers: res.headers, body: req.method === 'HEAD' ? undefined : res.body };
  },
});

// What the browser needs to sign in, served as /api/app/config.json so one build runs in every environment.
// Locally the page asks for a dev token; in Azure it signs in with MSAL against the API's own app registration.
import type { WebClientConfig } from '../../../contract/me.js';
import type { Config } from '../config.js';

/**
 * WEB_CLIENT_ID: the SPA's app registration (a public client with the app URL as a redirect URI); defaults to the API
 * audience when that is a bare client id. WEB_API_SCOPE: the delegated scope the SPA asks for (default
 * `<AUTH_AUDIENCE>/.default`, which carries the app roles). The authority comes from AUTH_ISSUER.
 */
export function webClientConfig(config: Config, env: Record<string, string | undefined> = process.env): WebClientConfig {
  if (config.auth.mode === 'local') return { auth: 'local' };
  const audience = config.auth.audience;
  const clientId = env.WEB_CLIENT_ID?.trim() || (/^[0-9a-f-]{36}$/i.test(audience) ? audience : '');
  const authority = config.auth.issuer.replace(/\/v2\.0\/?$/, '').replace(/\/+$/, '');
  const scope = env.WEB_API_SCOPE?.trim() || `${audience.replace(/\/+$/, '')}/.default`;
  return { auth: 'entra', client_id: clientId, authority, scopes: [scope], admin_role: config.auth.adminRole };
}

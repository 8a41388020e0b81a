// The OpenAPI document is generated from the same zod schemas that validate requests (contract/).
import { OpenAPIRegistry, OpenApiGeneratorV31, type RouteConfig } from '@asteasolutions/zod-to-openapi';
import { errorBodySchema } from '../../contract/errors.js';

export const registry = new OpenAPIRegistry();
registry.registerComponent('securitySchemes', 'bearer', { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' });

const errorResponses = {
  400: { description: 'invalid_request', content: { 'application/json': { schema: errorBodySchema } } },
  401: { description: 'unauthorized', content: { 'application/json': { schema: errorBodySchema } } },
  403: { description: 'forbidden', content: { 'application/json': { schema: errorBodySchema } } },
  404: { description: 'not_found (also for other tenants\' resources)', content: { 'application/json': { schema: errorBodySchema } } },
};

/** Registers one route; trigger files call this next to app.http so the document cannot miss a route. */
export function describeRoute(config: Omit<RouteConfig, 'responses'> & { responses: RouteConfig['responses']; anonymous?: boolean }): void {
  const { anonymous, ...rest } = config;
  registry.registerPath({
    ...rest,
    path: `/api${rest.path}`,
    security: anonymous ? [] : [{ bearer: [] }],
    responses: { ...errorResponses, ...rest.responses },
  });
}

let cached: object | undefined;
export function openApiDocument(): object {
  cached ??= new OpenApiGeneratorV31(registry.definitions).generateDocument({
    openapi: '3.1.0',
    info: {
      title: 'lora-router API',
      version: '0.1.0',
      description: 'LoRA library, jobs and the affinity scheduler. Errors: { "error": { "code", "message" } }.',
    },
    servers: [{ url: '/' }],
  });
  return cached;
}

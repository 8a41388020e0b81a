// The thin HTTP layer shared by every HTTP trigger: authenticate, parse and validate, run a host-free handler,
// map errors to the contract's JSON error body. Bad input is always a 4xx, never a crash.
import type { HttpRequest, HttpResponseInit, InvocationContext } from '@azure/functions';
import { ZodError, type ZodType } from 'zod';
import { errorBodySchema } from '../../contract/errors.js';
import { requireRole, type Principal, type Role } from './auth.js';
import { ConfigError } from './config.js';
import { ApiError, badRequest } from './errors.js';
import { rootLogger } from './logger.js';
import { isTransientDependencyError } from './sdk-errors.js';
import { getServices, type Services } from './services.js';

export const MAX_JSON_BODY_BYTES = 1024 * 1024;

export interface HandlerInput<B> {
  req: HttpRequest;
  context: InvocationContext;
  principal: Principal;
  body: B;
  params: Record<string, string>;
  query: URLSearchParams;
  services: Services;
}

export interface RouteOptions<B> {
  /** Who may call: 'anonymous' or the roles allowed (admins may do what users do). */
  auth: 'anonymous' | Role[];
  /** JSON body schema; the parsed value is passed as `body`. */
  body?: ZodType<B>;
  handler: (input: HandlerInput<B>) => Promise<HttpResponseInit>;
}

const ANONYMOUS: Principal = { role: 'user', subject: 'anonymous', tenantId: 'anonymous' };

/** OpenAPI response entries for a trigger's `responses`: the contract's error body, or a JSON body of `schema`. */
export const errorContent = (description: string) => ({ description, content: { 'application/json': { schema: errorBodySchema } } });
export const jsonContent = (description: string, schema: ZodType<unknown>) => ({ description, content: { 'application/json': { schema } } });

export function json(status: number, body: unknown, headers: Record<string, string> = {}): HttpResponseInit {
  return { status, jsonBody: body, headers: { 'Cache-Control': 'no-store', ...headers } };
}

export function errorResponse(err: unknown, context?: InvocationContext): HttpResponseInit {
  if (err instanceof ApiError) {
    return json(err.status, { error: { code: err.code, message: err.message, ...(err.details ? { details: err.details } : {}) } }, err.headers);
  }
  if (err instanceof ZodError) {
    const issues = err.issues.map((i) => ({ path: i.path.join('.'), message: i.message }));
    const first = issues[0];
    const message = first ? `${first.path || 'body'}: ${first.message}` : 'invalid request';
    return json(400, { error: { code: 'invalid_request', message, details: issues } });
  }
  if (err instanceof ConfigError) {
    rootLogger.error({ err: err.message }, 'configuration error');
    return json(503, { error: { code: 'unavailable', message: 'service is misconfigured; see the server log' } });
  }
  const invocationId = context?.invocationId;
  if (isTransientDependencyError(err)) {
    rootLogger.warn({ err, invocationId }, 'a backing service timed out or is unavailable');
    return json(
      503,
      { error: { code: 'unavailable', message: 'a backing service (Cosmos DB or Storage) timed out or is busy; retry in a few seconds (a job submission with the same Idempotency-Key is safe to retry)' } },
      { 'Retry-After': '5' },
    );
  }
  rootLogger.error({ err, invocationId }, 'unhandled error');
  return json(500, { error: { code: 'internal', message: `internal error (invocation ${invocationId ?? 'n/a'})` } });
}

export async function readJsonBody(req: HttpRequest): Promise<unknown> {
  const type = req.headers.get('content-type') ?? '';
  const declared = Number(req.headers.get('content-length') ?? '0');
  if (declared > MAX_JSON_BODY_BYTES) throw new ApiError('too_large', `JSON body over ${MAX_JSON_BODY_BYTES} bytes`);
  if (type && !/^application\/(.+\+)?json\b/i.test(type)) {
    throw badRequest(`expected Content-Type: application/json, got ${type}`);
  }
  const text = (await readBodyCapped(req, MAX_JSON_BODY_BYTES)).toString('utf8');
  if (text.trim() === '') throw badRequest('request body is empty; expected a JSON object');
  try {
    return JSON.parse(text);
  } catch {
    throw badRequest('request body is not valid JSON');
  }
}

/**
 * The request body, counted while it streams: a chunked body without Content-Length stops (and the stream is
 * cancelled) as soon as it passes `limit`, instead of being read whole first.
 */
export async function readBodyCapped(req: Pick<HttpRequest, 'body'>, limit: number): Promise<Buffer> {
  const stream = req.body;
  if (!stream) return Buffer.alloc(0);
  const reader = stream.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    let step: Awaited<ReturnType<typeof reader.read>>;
    try {
      step = await reader.read();
    } catch {
      throw badRequest('could not read the request body');
    }
    if (step.done) break;
    total += step.value.byteLength;
    if (total > limit) {
      await reader.cancel().catch(() => undefined);
      throw new ApiError('too_large', `JSON body over ${limit} bytes`);
    }
    chunks.push(step.value);
  }
  return Buffer.concat(chunks);
}

/** Wraps a host-free handler into an Azure Functions HTTP handler. */
export function route<B = undefined>(options: RouteOptions<B>) {
  return async (req: HttpRequest, context: InvocationContext): Promise<HttpResponseInit> => {
    try {
      const services = getServices();
      let principal = ANONYMOUS;
      if (options.auth !== 'anonymous') {
        principal = await services.auth.authenticate(req.headers.get('authorization'));
        requireRole(principal, ...options.auth);
      }
      const body = options.body ? options.body.parse(await readJsonBody(req)) : (undefined as B);
      return await options.handler({ req, context, principal, body, params: { ...req.params }, query: req.query, services });
    } catch (err) {
      return errorResponse(err, context);
    }
  };
}

/** Parses a path/query value with a schema; a bad value is a 404 for ids (nothing by that name) or 400 otherwise. */
export function parseParam<T>(schema: ZodType<T>, value: string | undefined | null, what: string, missing: 'not_found' | 'invalid_request' = 'not_found'): T {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  if (missing === 'not_found') throw new ApiError('not_found', `${what} not found`);
  throw badRequest(`${what}: ${r.error.issues[0]?.message ?? 'invalid'}`);
}

/** An optional non-negative integer query value; 400 naming it when malformed. */
export function intQuery(query: URLSearchParams, name: string, fallback: number, min: number, max: number): number {
  const raw = query.get(name);
  if (raw === null || raw === '') return fallback;
  if (!/^\d+$/.test(raw)) throw badRequest(`${name} must be an integer between ${min} and ${max}`);
  const n = Number(raw);
  if (n < min || n > max) throw badRequest(`${name} must be an integer between ${min} and ${max}`);
  return n;
}

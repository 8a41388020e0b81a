// Small pieces shared by the job/machine trigger files: OpenAPI error entries and query parsing.
import type { ZodType } from 'zod';
import { errorBodySchema } from '../../../contract/errors.js';
import { jobIdSchema } from '../../../contract/ids.js';
import { z } from '../../../contract/zod.js';
import { badRequest } from '../errors.js';
import { parseParam } from '../http.js';

export const errorContent = (description: string) => ({ description, content: { 'application/json': { schema: errorBodySchema } } });
export const jsonContent = (description: string, schema: ZodType<unknown>) => ({ description, content: { 'application/json': { schema } } });

export const jobIdParams = z.object({ id: jobIdSchema });

/** The `{id}` path parameter as a job id; anything else is a 404 (no such job). */
export const jobIdParam = (params: Record<string, string>): string => parseParam(jobIdSchema, params.id, `job ${params.id ?? ''}`);

/** An optional non-negative integer query value; 400 naming it when malformed. */
export function intQuery(query: URLSearchParams, name: string, fallback: number, min: number, max: number): number {
  const raw = query.get(name);
  if (raw === null || raw === '') return fallback;
  if (!/^\d+$/.test(raw)) throw badRequest(`${name} must be an integer between ${min} and ${max}`);
  const n = Number(raw);
  if (n < min || n > max) throw badRequest(`${name} must be an integer between ${min} and ${max}`);
  return n;
}

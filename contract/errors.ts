import { z } from './zod.js';

export const errorCodes = [
  'invalid_request',
  'unauthorized',
  'forbidden',
  'not_found',
  'conflict',
  'too_large',
  'invalid_lora',
  'lora_not_ready',
  'quota_exceeded',
  'unknown_pool',
  'too_many_requests',
  'unavailable',
  'internal',
] as const;
export type ErrorCode = (typeof errorCodes)[number];

export const errorStatus: Record<ErrorCode, number> = {
  invalid_request: 400,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  conflict: 409,
  too_large: 413,
  invalid_lora: 422,
  lora_not_ready: 422,
  quota_exceeded: 429,
  unknown_pool: 422,
  too_many_requests: 429,
  unavailable: 503,
  internal: 500,
};

export const errorBodySchema = z
  .object({
    error: z.object({
      code: z.enum(errorCodes),
      message: z.string(),
      details: z.unknown().optional(),
    }),
  })
  .openapi('Error');
export type ErrorBody = z.infer<typeof errorBodySchema>;

// Errors that map to the HTTP contract. Core code throws these; the HTTP layer turns them into JSON bodies.
import type { ErrorCode } from '../../contract/errors.js';
import { errorStatus } from '../../contract/errors.js';

export class ApiError extends Error {
  readonly status: number;
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details?: unknown,
    readonly headers?: Record<string, string>,
  ) {
    super(message);
    this.name = 'ApiError';
    this.status = errorStatus[code];
  }
}

export const badRequest = (message: string, details?: unknown) => new ApiError('invalid_request', message, details);
export const notFound = (what: string) => new ApiError('not_found', `${what} not found`);
export const conflict = (message: string, details?: unknown) => new ApiError('conflict', message, details);
export const unauthorized = (message = 'missing or invalid bearer token') =>
  new ApiError('unauthorized', message, undefined, { 'WWW-Authenticate': 'Bearer' });
export const forbidden = (message: string) => new ApiError('forbidden', message);
export const quotaExceeded = (message: string, details?: unknown) => new ApiError('quota_exceeded', message, details);

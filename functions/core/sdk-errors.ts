// Status predicates for Azure SDK errors, shared by every core module: Cosmos errors carry the HTTP status in `code`,
// Storage errors in `statusCode` (their `code` is a string such as BlobNotFound).

/** The HTTP status of an Azure SDK error (Storage `statusCode`, Cosmos `code`), or undefined. */
export function sdkStatus(err: unknown): number | undefined {
  const e = err as { code?: unknown; statusCode?: unknown } | null;
  if (typeof e?.statusCode === 'number') return e.statusCode;
  if (typeof e?.code === 'number') return e.code;
  return undefined;
}

export const isNotFound = (err: unknown): boolean => sdkStatus(err) === 404;
export const isConflict = (err: unknown): boolean => sdkStatus(err) === 409;
/** 412: an ETag condition failed (Cosmos CAS lost, or the blob changed under a conditional read). */
export const isPreconditionFailed = (err: unknown): boolean => sdkStatus(err) === 412;

const TRANSIENT_STATUSES = new Set([408, 429, 449, 502, 503, 504]);
const TRANSIENT_CODES = new Set(['TimeoutError', 'REQUEST_SEND_ERROR', 'ECONNRESET', 'ECONNREFUSED', 'ETIMEDOUT', 'EPIPE', 'EAI_AGAIN']);

/**
 * A backing service (Cosmos DB, Storage) timed out, throttled beyond the SDK's own retries, or could not be reached:
 * the request may succeed when retried, so the caller gets 503 + Retry-After rather than a 500.
 */
export function isTransientDependencyError(err: unknown): boolean {
  const status = sdkStatus(err);
  if (status !== undefined) return TRANSIENT_STATUSES.has(status);
  const e = err as { code?: unknown; name?: unknown; cause?: unknown } | null;
  if (typeof e?.code === 'string' && TRANSIENT_CODES.has(e.code)) return true;
  if (e?.name === 'TimeoutError') return true;
  return e?.cause !== undefined && e.cause !== err && isTransientDependencyError(e.cause);
}

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

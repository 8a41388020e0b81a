// Numbers the page shares with the API. Copied (not imported) from contract/loras.ts because that module pulls zod
// and the OpenAPI extension into the bundle; test/web/contract-limits.test.ts checks they stay equal.
export const MAX_DIRECT_UPLOAD_BYTES = 100 * 1024 * 1024;
export const MAX_LORAS_PER_JOB = 8;

// The `{id}` path parameter of the job trigger files.
import { jobIdSchema } from '../../../contract/ids.js';
import { z } from '../../../contract/zod.js';
import { parseParam } from '../http.js';

export const jobIdParams = z.object({ id: jobIdSchema });

/** The `{id}` path parameter as a job id; anything else is a 404 (no such job). */
export const jobIdParam = (params: Record<string, string>): string => parseParam(jobIdSchema, params.id, `job ${params.id ?? ''}`);

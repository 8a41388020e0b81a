// Job outputs: files an executor leaves in its run's output folder, uploaded by the agent with write-only SAS the
// control plane issues for one job and epoch, recorded on the job together with its `succeeded` outcome, and read by
// their owner through short-lived read URLs.
import { z } from './zod.js';

/** Default limits (the control plane's OUTPUT_MAX_FILES / OUTPUT_MAX_BYTES may lower or raise them). */
export const DEFAULT_MAX_OUTPUT_FILES = 32;
export const DEFAULT_MAX_OUTPUT_BYTES = 512 * 1024 ** 2;

/**
 * An output's name as the agent proposes it: a plain file name (no folders), 1-200 characters of A-Z a-z 0-9 . _ -,
 * not starting with a dot. The blob name the control plane chooses is derived from it and scoped to tenant/job/epoch.
 */
export const outputNameSchema = z
  .string()
  .regex(/^[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}$/, 'must be 1-200 chars of A-Z a-z 0-9 . _ - and not start with a dot');

export const contentTypeSchema = z
  .string()
  .max(100)
  .regex(/^[a-z0-9][a-z0-9.+-]*\/[a-z0-9][a-z0-9.+-]*$/i, 'must be a MIME type such as image/png');

const sha256Schema = z.string().regex(/^[0-9a-f]{64}$/, 'must be a lower-case hex sha256');

/** Machine → control plane: the files it is about to upload for this attempt. */
export const outputUploadRequestSchema = z
  .object({
    epoch: z.number().int().positive(),
    files: z
      .array(z.object({ name: outputNameSchema, size_bytes: z.number().int().nonnegative(), content_type: contentTypeSchema }).strict())
      .min(1)
      .max(1000),
  })
  .strict()
  .openapi('OutputUploadRequest');
export type OutputUploadRequest = z.infer<typeof outputUploadRequestSchema>;

export const outputUploadResponseSchema = z
  .object({
    uploads: z.array(z.object({ name: z.string(), blob_name: z.string(), upload_url: z.string().url() })),
    expires_at: z.string(),
  })
  .openapi('OutputUploadResponse');
export type OutputUploadResponse = z.infer<typeof outputUploadResponseSchema>;

/** One uploaded output as the agent reports it with `succeeded` and as the job view lists it. */
export const jobOutputSchema = z
  .object({ name: outputNameSchema, size_bytes: z.number().int().nonnegative(), sha256: sha256Schema, content_type: contentTypeSchema })
  .strict()
  .openapi('JobOutput');
export type JobOutput = z.infer<typeof jobOutputSchema>;

/** GET /api/jobs/{id}/outputs: each output with a short-lived read URL (owner only). */
export const jobOutputListSchema = z
  .object({
    job_id: z.string(),
    epoch: z.number().int(),
    outputs: z.array(jobOutputSchema.extend({ url: z.string().url() })),
    urls_expire_at: z.string(),
    outputs_expire_at: z.string().nullable(),
  })
  .openapi('JobOutputList');
export type JobOutputList = z.infer<typeof jobOutputListSchema>;

/** Content type by extension, for what executors usually write; anything else is application/octet-stream. */
export function contentTypeFor(name: string): string {
  const ext = /\.([A-Za-z0-9]+)$/.exec(name)?.[1]?.toLowerCase();
  return (ext && CONTENT_TYPES[ext]) || 'application/octet-stream';
}
const CONTENT_TYPES: Record<string, string> = {
  png: 'image/png',
  jpg: 'image/jpeg',
  jpeg: 'image/jpeg',
  webp: 'image/webp',
  gif: 'image/gif',
  mp4: 'video/mp4',
  webm: 'video/webm',
  json: 'application/json',
  txt: 'text/plain',
  safetensors: 'application/octet-stream',
};

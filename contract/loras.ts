// LoRA library bodies (ADR-010 Part 1). snake_case on the wire.
import { loraIdSchema, sha256HexSchema, sharedFilenameSchema } from './ids.js';
import { USER_LORA_PAGE_MAX } from './loras-paging.js';
import { z } from './zod.js';

export const MAX_DIRECT_UPLOAD_BYTES = 100 * 1024 * 1024; // Functions cap HTTP bodies at 100 MB.
export const MAX_LORA_BYTES = 4 * 1024 * 1024 * 1024; // Hard ceiling for one file, far above real LoRAs (~2 GB).

export const loraStatusSchema = z.enum(['uploading', 'validating', 'ready', 'rejected']);
export type LoraStatus = z.infer<typeof loraStatusSchema>;

// User and shared LoRAs differ only in how they are named (id + flat_file_id + original_name vs filename); these
// shapes are the rest, written once.
/** Where validation stands for a stored file. */
const verdictShape = {
  sha256: z.string().nullable(),
  status: loraStatusSchema,
  reject_reason: z.string().nullable(),
};
/** A LoRA record as listed and read. */
const loraRecordShape = {
  size_bytes: z.number().int(),
  ...verdictShape,
  created_at: z.string(),
  updated_at: z.string(),
};
/** An upload session: PUT the bytes to upload_url before expires_at. */
const uploadSessionShape = {
  upload_url: z.string().url(),
  expires_at: z.string(),
  status: z.literal('uploading'),
};
/** A direct (multipart) upload's answer: stored and already validated. */
const directUploadShape = {
  url: z.string(),
  size_bytes: z.number().int(),
  ...verdictShape,
};

export const createUploadRequestSchema = z
  .object({
    original_name: z.string().min(1).max(255),
    size_bytes: z.number().int().positive().max(MAX_LORA_BYTES),
  })
  .strict()
  .openapi('CreateUploadRequest');
export type CreateUploadRequest = z.infer<typeof createUploadRequestSchema>;

export const createUploadResponseSchema = z.object({ flat_file_id: loraIdSchema, ...uploadSessionShape }).openapi('CreateUploadResponse');
export type CreateUploadResponse = z.infer<typeof createUploadResponseSchema>;

export const userLoraSchema = z
  .object({ id: loraIdSchema, flat_file_id: loraIdSchema, original_name: z.string(), ...loraRecordShape })
  .openapi('UserLora');
export type UserLora = z.infer<typeof userLoraSchema>;

export const directUploadResponseSchema = z
  .object({ flat_file_id: loraIdSchema, original_name: z.string(), ...directUploadShape })
  .openapi('DirectUploadResponse');
export type DirectUploadResponse = z.infer<typeof directUploadResponseSchema>;

/** GET /api/user-loras pages: `limit` per page (default and bounds below), `continuation` from the previous page. */
export const USER_LORA_PAGE_DEFAULT = 100;
export { USER_LORA_PAGE_MAX };
/** Opaque to clients (base64url); the server checks its shape and answers 400 for anything it did not issue. */
export const loraContinuationSchema = z.string().regex(/^[A-Za-z0-9_-]{1,8192}$/, 'must be the continuation value of a previous page');

export const userLoraListQuerySchema = z.object({
  limit: z.number().int().min(1).max(USER_LORA_PAGE_MAX).optional(),
  continuation: loraContinuationSchema.optional(),
});

export const userLoraListSchema = z
  .object({
    loras: z.array(userLoraSchema),
    /** Pass as ?continuation= for the next page; null on the last page. A page may hold fewer than `limit` entries. */
    continuation: z.string().nullable(),
  })
  .openapi('UserLoraList');
export type UserLoraList = z.infer<typeof userLoraListSchema>;


export const createSharedUploadRequestSchema = z
  .object({ filename: sharedFilenameSchema, size_bytes: z.number().int().positive().max(MAX_LORA_BYTES) })
  .strict()
  .openapi('CreateSharedUploadRequest');
export type CreateSharedUploadRequest = z.infer<typeof createSharedUploadRequestSchema>;

export const sharedLoraSchema = z.object({ filename: sharedFilenameSchema, ...loraRecordShape }).openapi('SharedLora');
export type SharedLora = z.infer<typeof sharedLoraSchema>;

/** POST /api/shared-loras: like CreateUploadResponse, keyed by filename (shared LoRAs have no flat_file_id). */
export const createSharedUploadResponseSchema = z
  .object({ filename: sharedFilenameSchema, ...uploadSessionShape })
  .openapi('CreateSharedUploadResponse');
export type CreateSharedUploadResponse = z.infer<typeof createSharedUploadResponseSchema>;

/** POST /api/shared-loras/upload: like DirectUploadResponse, keyed by filename. */
export const sharedDirectUploadResponseSchema = z
  .object({ filename: sharedFilenameSchema, ...directUploadShape })
  .openapi('SharedDirectUploadResponse');
export type SharedDirectUploadResponse = z.infer<typeof sharedDirectUploadResponseSchema>;

export const sharedLoraListSchema = z.object({ loras: z.array(sharedLoraSchema) }).openapi('SharedLoraList');

export const successSchema = z.object({ success: z.literal(true) }).openapi('Success');

export { sha256HexSchema };

// The one message the scheduler sends to a machine. Deliberately tiny: the job spec and LoRA URLs come from the
// claim call, which is fenced by the epoch, so a stale or duplicated message can never start a second run.
import { jobIdSchema, traceparentSchema } from './ids.js';
import { z } from './zod.js';

export const dispatchMessageSchema = z
  .object({
    job_id: jobIdSchema,
    epoch: z.number().int().positive(),
    /** The dispatch span's trace context (optional: messages from before tracing stay valid). */
    traceparent: traceparentSchema.optional(),
  })
  .strict();
export type DispatchMessage = z.infer<typeof dispatchMessageSchema>;

/** Service Bus duplicate detection and Storage queue consumers both key on this. */
export const dispatchMessageId = (m: DispatchMessage): string => `${m.job_id}:${m.epoch}`;

/** GET /api/dead-letters: a dead-lettered dispatch and what recovering it would do (functions/core/jobs/dead-letters.ts). */
export const deadLetterViewSchema = z
  .object({
    message_id: z.string(),
    job_id: z.string().nullable(),
    epoch: z.number().int().nullable(),
    machine_id: z.string().nullable(),
    reason: z.string(),
    description: z.string().nullable(),
    delivery_count: z.number().int(),
    dead_lettered_at: z.string().nullable(),
    job_status: z.enum(['pending', 'assigned', 'running', 'succeeded', 'failed', 'cancelled']).nullable(),
    job_epoch: z.number().int().nullable(),
    /** replace: the job is still assigned at this epoch and recovery re-places it; running: the machine has it;
     *  stale: the job moved on or the body was malformed. */
    verdict: z.enum(['replace', 'running', 'stale']),
  })
  .openapi('DeadLetter');
export type DeadLetterView = z.infer<typeof deadLetterViewSchema>;
export const deadLetterListSchema = z.object({ dead_letters: z.array(deadLetterViewSchema) }).openapi('DeadLetterList');

export const recoverDeadLettersRequestSchema = z
  .object({ message_ids: z.array(z.string().min(1).max(200)).max(100).default([]) })
  .strict()
  .openapi('RecoverDeadLettersRequest');
export const recoverDeadLettersResponseSchema = z
  .object({ replaced: z.array(z.string()), removed: z.array(z.string()), kept: z.array(z.string()) })
  .openapi('RecoverDeadLettersResponse');

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

// Job intake, state and the machine-facing claim/events bodies.
import { jobIdSchema, loraIdSchema, machineIdSchema, poolSchema, sharedFilenameSchema, traceparentSchema, DEFAULT_POOL } from './ids.js';
import { jobOutputSchema } from './outputs.js';
import { z } from './zod.js';

export const MAX_LORAS_PER_JOB = 8;
export const MAX_PAYLOAD_BYTES = 64 * 1024;

export const loraRequirementSchema = z
  .discriminatedUnion('type', [
    z.object({ type: z.literal('user'), flat_file_id: loraIdSchema }).strict(),
    z.object({ type: z.literal('shared'), filename: sharedFilenameSchema }).strict(),
  ])
  .openapi('LoraRequirement');
export type LoraRequirement = z.infer<typeof loraRequirementSchema>;

export const submitJobRequestSchema = z
  .object({
    service_required: z.string().min(1).max(64).regex(/^[A-Za-z0-9._-]+$/),
    pool: poolSchema.default(DEFAULT_POOL),
    priority: z.number().int().min(0).max(9).default(5),
    payload: z
      .record(z.string(), z.unknown())
      .default({})
      .refine((p) => Buffer.byteLength(JSON.stringify(p)) <= MAX_PAYLOAD_BYTES, 'payload must be at most 64 KiB of JSON'),
    requirements: z
      .object({ loras: z.array(loraRequirementSchema).max(MAX_LORAS_PER_JOB).default([]) })
      .strict()
      .default({ loras: [] }),
  })
  .strict()
  .openapi('SubmitJobRequest');
export type SubmitJobRequest = z.infer<typeof submitJobRequestSchema>;

export const jobStatusSchema = z.enum(['pending', 'assigned', 'running', 'succeeded', 'failed', 'cancelled']);
export type JobStatus = z.infer<typeof jobStatusSchema>;
export const TERMINAL_JOB_STATUSES: readonly JobStatus[] = ['succeeded', 'failed', 'cancelled'];

export const submitJobResponseSchema = z
  .object({ job_id: jobIdSchema, status: jobStatusSchema })
  .openapi('SubmitJobResponse');

/** Named parts of a placement score, kept with every assignment so a routing decision can be explained later. */
export const scoreBreakdownSchema = z.record(z.string(), z.number()).openapi('ScoreBreakdown');

/** Runners-up kept with an assignment (`job --explain`). */
export const MAX_RUNNERS_UP = 3;
/** Wait reasons kept per job, newest last (older ones are dropped). */
export const MAX_JOB_WAITS = 5;

/** A machine that scored below the chosen one for the same job in the same pass (among those the policy scored). */
export const runnerUpSchema = z
  .object({ machine_id: z.string(), score: z.number(), score_breakdown: scoreBreakdownSchema })
  .openapi('RunnerUp');
export type RunnerUp = z.infer<typeof runnerUpSchema>;

/**
 * Why the scheduler left a pending job where it was: `delayed` (held back for `machine_id`, a busy machine that holds
 * its LoRAs), `no_machine_in_pool` (no live, undrained, healthy, receiving machine of its pool), `no_capacity` (no
 * free slot), `not_before` (retry backoff).
 */
export const waitReasonSchema = z.enum(['delayed', 'no_machine_in_pool', 'no_capacity', 'not_before']);
export type WaitReason = z.infer<typeof waitReasonSchema>;

/** One recorded wait: recorded when the reason changes, not on every pass. */
export const jobWaitSchema = z
  .object({ reason: waitReasonSchema, since: z.string(), machine_id: z.string().nullable() })
  .openapi('JobWait');
export type JobWait = z.infer<typeof jobWaitSchema>;

/**
 * Set when cross-pool overflow (POOL_OVERFLOW) placed the job outside its own pool: `from_pool`'s expected wait
 * (null: no machine served it) was over `threshold_seconds`, `to_pool`'s was not.
 */
export const jobOverflowSchema = z
  .object({
    from_pool: z.string(),
    to_pool: z.string(),
    from_wait_seconds: z.number().nullable(),
    to_wait_seconds: z.number(),
    threshold_seconds: z.number(),
  })
  .openapi('JobOverflow');
export type JobOverflow = z.infer<typeof jobOverflowSchema>;

export const jobViewSchema = z
  .object({
    job_id: jobIdSchema,
    status: jobStatusSchema,
    service_required: z.string(),
    pool: z.string(),
    priority: z.number().int(),
    requirements: z.object({ loras: z.array(loraRequirementSchema) }),
    machine_id: z.string().nullable(),
    attempt: z.number().int(),
    epoch: z.number().int(),
    affinity_score: z.number().nullable(),
    score_breakdown: scoreBreakdownSchema.nullable(),
    policy: z.string().nullable(),
    /** The best other machines of the pass that placed the job, best first (at most MAX_RUNNERS_UP). */
    runners_up: z.array(runnerUpSchema),
    /** The last assignment's cross-pool overflow: where the job ran instead of `pool`, and why. null = in its own pool. */
    overflow: jobOverflowSchema.nullable(),
    /** Why the job waited, oldest first (at most MAX_JOB_WAITS). None recorded = it never waited for more than a free slot. */
    waits: z.array(jobWaitSchema),
    cache: z.object({ hit_loras: z.array(z.string()), missing_loras: z.array(z.string()) }),
    error: z.string().nullable(),
    result: z.unknown().nullable(),
    /** Files the succeeded attempt delivered (GET /jobs/{id}/outputs for read URLs); empty until then. */
    outputs: z.array(jobOutputSchema),
    outputs_expire_at: z.string().nullable(),
    created_at: z.string(),
    assigned_at: z.string().nullable(),
    /** When the machine's claim was accepted: the attempt holds its slot from here (its LoRAs are fetched next). */
    claimed_at: z.string().nullable(),
    /** When the run started (the agent's `started` report: LoRAs ready, the executor takes the job); null until then. */
    started_at: z.string().nullable(),
    finished_at: z.string().nullable(),
    not_before: z.string().nullable(),
  })
  .openapi('Job');
export type JobView = z.infer<typeof jobViewSchema>;

export const jobListSchema = z.object({ jobs: z.array(jobViewSchema) }).openapi('JobList');

export const claimRequestSchema = z
  .object({
    machine_id: machineIdSchema,
    epoch: z.number().int().positive(),
    /** The agent's claim span, so the server's claim span joins the job's trace (optional). */
    traceparent: traceparentSchema.optional(),
  })
  .strict()
  .openapi('ClaimRequest');
export type ClaimRequest = z.infer<typeof claimRequestSchema>;

export const claimedLoraSchema = z
  .object({
    kind: z.enum(['user', 'shared']),
    /** flat_file_id for user LoRAs, filename for shared ones: the cache key on the machine. */
    key: z.string(),
    size_bytes: z.number().int(),
    sha256: z.string(),
    download_url: z.string().url(),
  })
  .openapi('ClaimedLora');
export type ClaimedLora = z.infer<typeof claimedLoraSchema>;

export const claimResponseSchema = z
  .object({
    job_id: jobIdSchema,
    epoch: z.number().int(),
    attempt: z.number().int(),
    service_required: z.string(),
    payload: z.record(z.string(), z.unknown()),
    loras: z.array(claimedLoraSchema),
    /**
     * When the first of the download URLs expires. Each lives a few minutes plus its file's size at a minimum rate
     * (DOWNLOAD_SAS_* settings); a download that outlasts its URL gets a fresh one from POST /jobs/{id}/download-url.
     */
    download_url_expires_at: z.string(),
  })
  .openapi('ClaimResponse');
export type ClaimResponse = z.infer<typeof claimResponseSchema>;

/** POST /api/jobs/{id}/download-url: a fresh read URL for one LoRA of a job this machine holds (claimed, current epoch). */
export const downloadUrlRequestSchema = z
  .object({
    machine_id: machineIdSchema,
    epoch: z.number().int().positive(),
    /** The claimed LoRA's key (flat_file_id or shared filename). */
    key: z.string().min(1).max(300),
  })
  .strict()
  .openapi('DownloadUrlRequest');
export type DownloadUrlRequest = z.infer<typeof downloadUrlRequestSchema>;

export const downloadUrlResponseSchema = z
  .object({ key: z.string(), download_url: z.string().url(), download_url_expires_at: z.string() })
  .openapi('DownloadUrlResponse');
export type DownloadUrlResponse = z.infer<typeof downloadUrlResponseSchema>;

const cacheOutcomeSchema = z.object({
  hit_loras: z.array(z.string()),
  missing_loras: z.array(z.string()),
  download_ms: z.number().nonnegative(),
  bytes_downloaded: z.number().int().nonnegative(),
});

/** What an agent reports about one attempt. Every event carries the epoch it was claimed with (fencing). */
export const jobEventInputSchema = z
  .discriminatedUnion('type', [
    z.object({ type: z.literal('started'), epoch: z.number().int().positive(), cache: cacheOutcomeSchema }).strict(),
    z
      .object({
        type: z.literal('progress'),
        epoch: z.number().int().positive(),
        progress: z.number().min(0).max(1),
        message: z.string().max(1000).optional(),
      })
      .strict(),
    z
      .object({
        type: z.literal('log'),
        epoch: z.number().int().positive(),
        stream: z.enum(['stdout', 'stderr', 'agent']),
        lines: z.array(z.string().max(8192)).min(1).max(500),
      })
      .strict(),
    z
      .object({
        type: z.literal('succeeded'),
        epoch: z.number().int().positive(),
        result: z.unknown().optional(),
        /** The files uploaded for this epoch (POST /jobs/{id}/outputs/uploads); recorded with the outcome, atomically. */
        outputs: z.array(jobOutputSchema).max(1000).optional(),
      })
      .strict(),
    z
      .object({
        type: z.literal('failed'),
        epoch: z.number().int().positive(),
        reason: z.string().max(2000),
        /** false when another attempt cannot help (bad payload); true for machine-side trouble (cache full, crash). */
        retryable: z.boolean().default(true),
        /**
         * true when the machine, not the job, is at fault (executor missing, disk full, executor backend down, agent
         * draining): the job goes back to pending without spending an attempt, and this machine is avoided.
         */
        handback: z.boolean().optional(),
      })
      .strict(),
  ])
  .openapi('JobEventInput');
export type JobEventInput = z.infer<typeof jobEventInputSchema>;

export const jobEventResponseSchema = z
  .object({ accepted: z.boolean(), cancel_requested: z.boolean() })
  .openapi('JobEventResponse');
export type JobEventResponse = z.infer<typeof jobEventResponseSchema>;

/** One entry of a job's event stream as users read it. `seq` is the `?after=` cursor. */
export const jobEventSchema = z
  .object({
    seq: z.number().int(),
    at: z.string(),
    type: z.string(),
    attempt: z.number().int(),
    machine_id: z.string().nullable(),
    data: z.record(z.string(), z.unknown()),
  })
  .openapi('JobEvent');
export type JobEvent = z.infer<typeof jobEventSchema>;

export const jobEventListSchema = z
  .object({ events: z.array(jobEventSchema), next_after: z.number().int(), status: jobStatusSchema })
  .openapi('JobEventList');

// Machine registration, heartbeat and fleet views.
import { jobIdSchema, loraIdSchema, machineIdSchema, poolSchema, sharedFilenameSchema, DEFAULT_POOL } from './ids.js';
import { z } from './zod.js';

export const HEARTBEAT_INTERVAL_MS = 5_000;

export const registerMachineRequestSchema = z
  .object({
    machine_id: machineIdSchema,
    pool: poolSchema.default(DEFAULT_POOL),
    slots: z.number().int().min(1).max(64).default(1),
  })
  .strict()
  .openapi('RegisterMachineRequest');
export type RegisterMachineRequest = z.infer<typeof registerMachineRequestSchema>;

export const registerMachineResponseSchema = z
  .object({ machine_id: machineIdSchema, pool: z.string(), token: z.string(), token_version: z.number().int(), token_expires_at: z.string() })
  .openapi('RegisterMachineResponse');

export const cacheCountersSchema = z
  .object({
    hits: z.number().int().nonnegative(),
    misses: z.number().int().nonnegative(),
    downloads: z.number().int().nonnegative(),
    bytes_downloaded: z.number().int().nonnegative(),
    evictions: z.number().int().nonnegative(),
    thrash: z.number().int().nonnegative(),
  })
  .openapi('CacheCounters');
export type CacheCounters = z.infer<typeof cacheCountersSchema>;
export const emptyCounters = (): CacheCounters => ({ hits: 0, misses: 0, downloads: 0, bytes_downloaded: 0, evictions: 0, thrash: 0 });

export const heartbeatSchema = z
  .object({
    pool: poolSchema,
    slots: z.number().int().min(1).max(64),
    running_jobs: z.array(z.object({ job_id: jobIdSchema, epoch: z.number().int() })).max(64),
    cached_loras: z.object({
      user: z.array(loraIdSchema).max(100_000),
      shared: z.array(sharedFilenameSchema).max(100_000),
    }),
    cache: z.object({
      budget_bytes: z.number().int().nonnegative(),
      used_bytes: z.number().int().nonnegative(),
      free_disk_bytes: z.number().int().nonnegative(),
      counters: cacheCountersSchema,
    }),
    /** Measured download speed, used to estimate how long missing LoRAs take on this machine. */
    download_bytes_per_second: z.number().nonnegative().optional(),
    draining: z.boolean().default(false),
    /**
     * False while the agent cannot receive its dispatches (another receiver holds its Service Bus session, or the
     * transport is down): the scheduler sends it nothing until a heartbeat says true again. Older agents omit it.
     */
    receiving: z.boolean().default(true),
    agent_version: z.string().max(64).optional(),
  })
  .strict()
  .openapi('Heartbeat');
export type Heartbeat = z.infer<typeof heartbeatSchema>;

export const heartbeatResponseSchema = z
  .object({
    ok: z.literal(true),
    /** Jobs this machine runs that were cancelled or re-routed: stop them. */
    stop_jobs: z.array(z.object({ job_id: jobIdSchema, epoch: z.number().int() })),
    /** Present once half of the calling token's lifetime has passed: use it from now on (and keep it for restarts). */
    machine_token: z.object({ token: z.string(), expires_at: z.string() }).optional(),
  })
  .openapi('HeartbeatResponse');
export type HeartbeatResponse = z.infer<typeof heartbeatResponseSchema>;

export const machineViewSchema = z
  .object({
    machine_id: machineIdSchema,
    pool: z.string(),
    slots: z.number().int(),
    live: z.boolean(),
    draining: z.boolean(),
    /** False while the agent reports that it cannot receive dispatches (see the runbook, "session busy"). */
    receiving: z.boolean(),
    last_heartbeat_at: z.string().nullable(),
    running_jobs: z.number().int(),
    cached_user_loras: z.number().int(),
    cached_shared_loras: z.number().int(),
    cache: heartbeatSchema.shape.cache.nullable(),
    registered_at: z.string(),
  })
  .openapi('Machine');
export type MachineView = z.infer<typeof machineViewSchema>;

export const machineListSchema = z.object({ machines: z.array(machineViewSchema) }).openapi('MachineList');

export const poolViewSchema = z
  .object({
    pool: z.string(),
    machines_live: z.number().int(),
    slots_total: z.number().int(),
    slots_busy: z.number().int(),
    pending_jobs: z.number().int(),
    estimated_wait_seconds: z.number().nullable(),
  })
  .openapi('Pool');
export const poolListSchema = z.object({ pools: z.array(poolViewSchema) }).openapi('PoolList');

export { sharedFilenameSchema };

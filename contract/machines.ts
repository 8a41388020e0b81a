// Machine registration, heartbeat and fleet views.
import { jobIdSchema, loraIdSchema, machineIdSchema, poolSchema, sharedFilenameSchema, DEFAULT_POOL } from './ids.js';
import { z } from './zod.js';

export const HEARTBEAT_INTERVAL_MS = 5_000;

/** A LoRA in a machine's cache: a user LoRA by flat_file_id or a shared one by file name. */
export const cacheKeySchema = z
  .discriminatedUnion('kind', [
    z.object({ kind: z.literal('user'), key: loraIdSchema }).strict(),
    z.object({ kind: z.literal('shared'), key: sharedFilenameSchema }).strict(),
  ])
  .openapi('CacheKey');
export type CacheKey = z.infer<typeof cacheKeySchema>;

/** A pre-warm order: what to fetch and from where (a read SAS minted when the heartbeat answer is built). */
export const prewarmItemSchema = z
  .object({
    kind: z.enum(['user', 'shared']),
    key: z.string(),
    size_bytes: z.number().int().nonnegative(),
    sha256: z.string(),
    download_url: z.string().url(),
    /**
     * A predictive pre-fetch hint from the scheduler (PREWARM_HINTS), not an admin's order: fetched at low priority
     * (after the machine's job downloads), declined when it would evict a recently used entry. Absent = admin order.
     */
    hint: z.boolean().optional(),
  })
  .openapi('PrewarmItem');
export type PrewarmItem = z.infer<typeof prewarmItemSchema>;

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

/**
 * Cache entries an agent reports per heartbeat at most: the most recently used ones. Bounded because every scheduler
 * pass reads every machine record: 50 entries are about 6 KB per record.
 */
export const REPORTED_CACHE_ENTRIES = 50;

/** One LoRA in a machine's cache, with what an operator asks about it. */
export const cacheEntrySchema = z
  .object({
    kind: z.enum(['user', 'shared']),
    key: z.string().max(256),
    size_bytes: z.number().int().nonnegative(),
    last_used_at: z.string().max(40),
    pinned: z.boolean(),
    /** Jobs using it right now (it is not evicted while > 0). */
    in_use: z.number().int().nonnegative(),
  })
  // Entries a newer agent extends are still accepted (version skew).
  .strip()
  .openapi('CacheEntry');
export type CacheEntry = z.infer<typeof cacheEntrySchema>;

export const heartbeatSchema = z
  .object({
    pool: poolSchema,
    slots: z.number().int().min(1).max(64),
    /**
     * Dispatches the agent takes beyond its slots (QUEUE_DEPTH): it claims them and downloads their LoRAs while its
     * slots are busy, and runs each when a slot frees. The scheduler may give it slots + queue_depth jobs. Absent = 0.
     */
    queue_depth: z.number().int().min(0).max(8).optional(),
    running_jobs: z.array(z.object({ job_id: jobIdSchema, epoch: z.number().int() })).max(72),
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
    /**
     * Set while the machine itself is broken (executor missing, disk full, executor backend down): the scheduler sends
     * it nothing until a heartbeat without it. Absent or null: healthy.
     */
    unhealthy_reason: z.string().max(1000).nullable().optional(),
    /** Cache keys the agent never evicts (PINNED_LORAS). */
    pinned: z.array(z.string().max(256)).max(1000).optional(),
    /**
     * Sizes and last use of the cached LoRAs, most recently used first, at most REPORTED_CACHE_ENTRIES (the control
     * plane keeps that many; up to 1000 are accepted from a newer agent). Older agents omit it.
     */
    cache_entries: z.array(cacheEntrySchema).max(1000).optional(),
  })
  // Version skew (docs/agent-runbook.md): the control plane ignores heartbeat fields it does not know (a newer agent),
  // and every field added later is optional (an older agent). Unknown fields are dropped, never a 400.
  .strip()
  .openapi('Heartbeat');
export type Heartbeat = z.infer<typeof heartbeatSchema>;

export const heartbeatResponseSchema = z
  .object({
    ok: z.literal(true),
    /** Jobs this machine runs that were cancelled or re-routed: stop them. */
    stop_jobs: z.array(z.object({ job_id: jobIdSchema, epoch: z.number().int() })),
    /** An admin drained this machine: it gets no new jobs; running jobs finish. The agent keeps running. */
    admin_drained: z.boolean().optional(),
    /**
     * LoRAs an admin asked this machine to drop from its cache (skipped while a job uses them or they are pinned). Not
     * `cacheKeySchema` (strict, for requests): an agent must take a newer control plane's entries with extra fields.
     */
    evict: z.array(z.object({ kind: z.enum(['user', 'shared']), key: z.string().max(256) })).max(1000).optional(),
    /** LoRAs an admin asked this machine to download ahead of demand (within the budget; never evicts pins or in-use). */
    prewarm: z.array(prewarmItemSchema).max(100).optional(),
    /** Things the operator should know, e.g. the agent's SLOTS above the admin's limit. The agent logs each one. */
    warnings: z.array(z.string()).max(20).optional(),
    /** Present once half of the calling token's lifetime has passed: use it from now on (and keep it for restarts). */
    machine_token: z.object({ token: z.string(), expires_at: z.string() }).optional(),
  })
  // The agent ignores answer fields it does not know (a newer control plane): see the version-skew rule.
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
    /** Drained by an admin (no new jobs; the agent keeps running). `draining` is the agent's own shutdown drain. */
    admin_drained: z.boolean(),
    /** Why the agent says the machine cannot run jobs now; null when healthy. */
    unhealthy_reason: z.string().nullable(),
    agent_version: z.string().nullable(),
    /** The admin's limit (registration) and what the agent reports (SLOTS); `slots` is the smaller one. */
    registered_slots: z.number().int(),
    agent_slots: z.number().int().nullable(),
    /** Jobs the agent takes beyond its slots (QUEUE_DEPTH; downloads overlap GPU work); 0 = none. */
    queue_depth: z.number().int(),
  })
  .openapi('Machine');
export type MachineView = z.infer<typeof machineViewSchema>;

/** GET /machines/{id}: the view plus what the machine holds and runs. */
export const machineDetailSchema = machineViewSchema
  .extend({
    cached: z.object({ user: z.array(z.string()), shared: z.array(z.string()) }),
    /** What the agent pins (PINNED_LORAS), as last reported. */
    pinned: z.array(z.string()),
    /**
     * Per-LoRA size and last use, most recently used first (at most REPORTED_CACHE_ENTRIES of the cached LoRAs); null
     * when the agent does not report them (an agent older than this field).
     */
    cache_entries: z.array(cacheEntrySchema).nullable(),
    /** The machine's active jobs: claimed_at is when it took the slot, started_at when the run began (as on the job). */
    jobs: z.array(
      z.object({
        job_id: z.string(),
        status: z.string(),
        epoch: z.number().int(),
        assigned_at: z.string().nullable(),
        claimed_at: z.string().nullable(),
        started_at: z.string().nullable(),
      }),
    ),
    pending_evict: z.array(cacheKeySchema),
    pending_prewarm: z.array(cacheKeySchema),
  })
  .openapi('MachineDetail');
export type MachineDetail = z.infer<typeof machineDetailSchema>;

/** POST /machines/{id}/drain | /undrain. */
export const drainResponseSchema = z.object({ machine_id: machineIdSchema, admin_drained: z.boolean() }).openapi('DrainResponse');

/** POST /machines/evict: drop a LoRA from one machine (machine_id) or from every machine (no machine_id). */
export const evictRequestSchema = z
  .object({ lora: cacheKeySchema, machine_id: machineIdSchema.optional() })
  .strict()
  .openapi('EvictRequest');
export type EvictRequest = z.infer<typeof evictRequestSchema>;

/** POST /machines/prewarm: fetch a LoRA onto the named machines ahead of demand. */
export const prewarmRequestSchema = z
  .object({ lora: cacheKeySchema, machine_ids: z.array(machineIdSchema).min(1).max(100) })
  .strict()
  .openapi('PrewarmRequest');
export type PrewarmRequest = z.infer<typeof prewarmRequestSchema>;

export const cacheOrderResponseSchema = z.object({ machines: z.array(machineIdSchema) }).openapi('CacheOrderResponse');

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

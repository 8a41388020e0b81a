// One typed, validated view of the app settings. Read once per process; a bad or missing setting stops startup
// with a message that names it. Identity-based connections in Azure, connection strings only in local mode.
import { z } from 'zod';
import { overflowRoutesSetting } from './scheduler/overflow-config.js';

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

/** App setting names, in one place: the Bicep cross-check test reads this list. */
export const SETTINGS = {
  mode: 'LORA_ROUTER_MODE',
  // Storage (blobs + queues): `LoraStorage` connection string locally, `LoraStorage__*` identity settings in Azure.
  storageConnection: 'LoraStorage',
  storageBlobServiceUri: 'LoraStorage__blobServiceUri',
  storageQueueServiceUri: 'LoraStorage__queueServiceUri',
  storageCredential: 'LoraStorage__credential',
  storageClientId: 'LoraStorage__clientId',
  userLoraContainer: 'USER_LORA_CONTAINER',
  sharedLoraContainer: 'SHARED_LORA_CONTAINER',
  outputContainer: 'OUTPUT_CONTAINER',
  // Cosmos DB: `CosmosDb` connection string locally, `CosmosDb__*` identity settings in Azure.
  cosmosConnection: 'CosmosDb',
  cosmosEndpoint: 'CosmosDb__accountEndpoint',
  cosmosCredential: 'CosmosDb__credential',
  cosmosClientId: 'CosmosDb__clientId',
  cosmosDatabase: 'COSMOS_DATABASE',
  /** Local mode only: the emulator's self-signed certificate, trusted by our Cosmos client and nothing else. */
  cosmosEmulatorCertPath: 'COSMOS_EMULATOR_CERT_PATH',
  // Dispatch transport.
  transport: 'DISPATCH_TRANSPORT',
  serviceBusConnection: 'ServiceBus',
  serviceBusNamespace: 'ServiceBus__fullyQualifiedNamespace',
  serviceBusCredential: 'ServiceBus__credential',
  serviceBusClientId: 'ServiceBus__clientId',
  serviceBusQueue: 'SERVICEBUS_QUEUE',
  storageQueuePrefix: 'DISPATCH_QUEUE_PREFIX',
  // Auth.
  authMode: 'AUTH_MODE',
  authDevSecret: 'AUTH_DEV_SECRET',
  authIssuer: 'AUTH_ISSUER',
  authAudience: 'AUTH_AUDIENCE',
  authJwksUri: 'AUTH_JWKS_URI',
  authAdminRole: 'AUTH_ADMIN_ROLE',
  machineTokenSecret: 'MACHINE_TOKEN_SECRET',
  machineTokenTtlMinutes: 'MACHINE_TOKEN_TTL_MINUTES',
  sseMaxStreamsPerTenant: 'SSE_MAX_STREAMS_PER_TENANT',
  sseMaxStreams: 'SSE_MAX_STREAMS',
  // Scheduling and limits.
  schedulerPolicy: 'SCHEDULER_POLICY',
  schedulerSchedule: 'SCHEDULER_SCHEDULE',
  reaperSchedule: 'REAPER_SCHEDULE',
  schedulerWeights: 'SCHEDULER_WEIGHTS',
  placementOnEvents: 'PLACEMENT_ON_EVENTS',
  poolOverflow: 'POOL_OVERFLOW',
  poolOverflowThresholdSeconds: 'POOL_OVERFLOW_THRESHOLD_SECONDS',
  prewarmHints: 'PREWARM_HINTS',
  prewarmHeadroom: 'PREWARM_HEADROOM',
  prewarmMinColdNeed: 'PREWARM_MIN_COLD_NEED',
  machineLivenessSeconds: 'MACHINE_LIVENESS_SECONDS',
  claimTimeoutSeconds: 'CLAIM_TIMEOUT_SECONDS',
  maxAttempts: 'JOB_MAX_ATTEMPTS',
  retryBaseSeconds: 'JOB_RETRY_BASE_SECONDS',
  tenantMaxActiveJobs: 'TENANT_MAX_ACTIVE_JOBS',
  userMaxLoras: 'USER_MAX_LORAS',
  userMaxLoraBytes: 'USER_MAX_LORA_BYTES',
  uploadSessionMinutes: 'UPLOAD_SESSION_MINUTES',
  downloadSasMinutes: 'DOWNLOAD_SAS_MINUTES',
  downloadSasMinMinutes: 'DOWNLOAD_SAS_MIN_MINUTES',
  downloadSasMinMiBps: 'DOWNLOAD_SAS_MIN_MIBPS',
  rejectedLoraRetentionHours: 'REJECTED_LORA_RETENTION_HOURS',
  // Job outputs.
  outputMaxFiles: 'OUTPUT_MAX_FILES',
  outputMaxBytes: 'OUTPUT_MAX_BYTES',
  outputRetentionDays: 'OUTPUT_RETENTION_DAYS',
  outputUploadSasMinutes: 'OUTPUT_UPLOAD_SAS_MINUTES',
  outputReadSasMinutes: 'OUTPUT_READ_SAS_MINUTES',
} as const;

const intSetting = (min: number, max: number) => z.coerce.number().int().min(min).max(max);
const ncrontab = z
  .string()
  .regex(/^(\S+\s+){5}\S+$/, 'must be a six-field NCRONTAB expression such as */2 * * * * *');

const GB = 1024 ** 3;

const baseSchema = z.object({
  mode: z.enum(['local', 'azure']),
  userLoraContainer: z.string().regex(/^[a-z0-9-]{3,63}$/).default('user-loras'),
  sharedLoraContainer: z.string().regex(/^[a-z0-9-]{3,63}$/).default('shared-loras'),
  outputContainer: z.string().regex(/^[a-z0-9-]{3,63}$/).default('job-outputs'),
  cosmosDatabase: z.string().min(1).default('lora-router'),
  transport: z.enum(['storage-queue', 'servicebus']),
  serviceBusQueue: z.string().min(1).default('jobs'),
  storageQueuePrefix: z.string().regex(/^[a-z0-9-]{1,15}$/).default('machine-'),
  authMode: z.enum(['local', 'entra']),
  authAdminRole: z.string().min(1).default('LoraRouter.Admin'),
  schedulerPolicy: z.string().min(1).default('affinity'),
  schedulerSchedule: ncrontab.default('*/2 * * * * *'),
  reaperSchedule: ncrontab.default('*/2 * * * * *'),
  schedulerWeights: z
    .string()
    .optional()
    .transform((s, ctx) => {
      if (!s) return {} as Record<string, number>;
      try {
        const parsed = z.record(z.string(), z.number()).parse(JSON.parse(s));
        return parsed;
      } catch {
        ctx.addIssue({ code: 'custom', message: 'must be a JSON object of numbers, e.g. {"affinity":1,"load":0.5}' });
        return z.NEVER;
      }
    }),
  /** Place a job at intake and after a job ends (tick/placement.ts); false = only the timer places (before issue 14). */
  placementOnEvents: z
    .enum(['true', 'false'], { message: 'must be "true" or "false"' })
    .default('true')
    .transform((v) => v === 'true'),
  /**
   * Cross-pool overflow (scheduler/overflow.ts): pool>targets routes (`gpu-a>gpu-b,gpu-c;gpu-b>gpu-a`) or the same as
   * JSON (`{"gpu-a":["gpu-b","gpu-c"]}`). Unset = off: a job only ever runs in its own pool.
   */
  poolOverflow: overflowRoutesSetting,
  /** A routed pool overflows when its expected wait (GET /api/pools) is over this; a target must be at or under it. */
  poolOverflowThresholdSeconds: intSetting(0, 86_400).default(30),
  /** Predictive pre-warm hints from the scheduler timer (tick/prewarm-pass.ts); off by default (docs/simulator.md). */
  prewarmHints: z
    .enum(['true', 'false'], { message: 'must be "true" or "false"' })
    .default('false')
    .transform((v) => v === 'true'),
  /** Share of its holders' slots a LoRA's expected concurrent jobs may fill before another machine is hinted. */
  prewarmHeadroom: z.coerce.number().min(0).max(100).default(0.03),
  /** Expected concurrent jobs before a LoRA that no machine holds gets a first hinted copy. */
  prewarmMinColdNeed: z.coerce.number().min(0).max(1000).default(0.5),
  machineLivenessSeconds: intSetting(2, 600).default(10),
  claimTimeoutSeconds: intSetting(2, 3600).default(30),
  maxAttempts: intSetting(1, 20).default(3),
  retryBaseSeconds: intSetting(0, 3600).default(2),
  tenantMaxActiveJobs: intSetting(1, 1_000_000).default(100),
  userMaxLoras: intSetting(1, 100_000).default(10),
  userMaxLoraBytes: intSetting(1, 2 ** 50).default(10 * GB),
  uploadSessionMinutes: intSetting(1, 24 * 60).default(60),
  /**
   * LoRA read URLs (claim and refresh) live DOWNLOAD_SAS_MIN_MINUTES plus the file's size at DOWNLOAD_SAS_MIN_MIBPS,
   * capped at DOWNLOAD_SAS_MINUTES: a cancelled or re-assigned job's URLs die soon; a slow download asks for a fresh one.
   */
  downloadSasMinutes: intSetting(1, 24 * 60).default(30),
  downloadSasMinMinutes: intSetting(1, 24 * 60).default(5),
  downloadSasMinMiBps: intSetting(1, 100_000).default(10),
  /** Rejected LoRA records (and abandoned upload sessions) are kept this long for their reject_reason, then expire. */
  rejectedLoraRetentionHours: intSetting(1, 24 * 365).default(24),
  outputMaxFiles: intSetting(1, 1000).default(32),
  outputMaxBytes: intSetting(1, 2 ** 40).default(512 * 1024 ** 2),
  /** Keep in step with the lifecycle rule in infra/app/storage.bicep (outputRetentionDays), which deletes the blobs. */
  outputRetentionDays: intSetting(1, 3650).default(7),
  outputUploadSasMinutes: intSetting(1, 24 * 60).default(30),
  outputReadSasMinutes: intSetting(1, 24 * 60).default(15),
  /** Machine token lifetime; agents get a fresh token in a heartbeat once half of it has passed. */
  machineTokenTtlMinutes: intSetting(2, 30 * 24 * 60).default(24 * 60),
  /** Open event streams per tenant and per host instance (each polls Cosmos); past them a 429. */
  sseMaxStreamsPerTenant: intSetting(1, 10_000).default(10),
  sseMaxStreams: intSetting(1, 100_000).default(500),
});

export type StorageConnection =
  | { kind: 'connectionString'; connectionString: string }
  /** queueServiceUri: only with DISPATCH_TRANSPORT=storage-queue (Azure dispatches over Service Bus). */
  | { kind: 'identity'; blobServiceUri: string; queueServiceUri?: string; clientId?: string };
export type CosmosConnection =
  | { kind: 'connectionString'; endpoint: string; key: string; emulatorCertPath?: string }
  | { kind: 'identity'; endpoint: string; clientId?: string };
export type ServiceBusConnection =
  | { kind: 'connectionString'; connectionString: string }
  | { kind: 'identity'; fullyQualifiedNamespace: string; clientId?: string };
export type AuthConfig =
  | { mode: 'local'; devSecret: string; machineTokenSecret: string; adminRole: string }
  | { mode: 'entra'; issuer: string; audience: string; jwksUri: string; machineTokenSecret: string; adminRole: string };

export type Config = Omit<z.infer<typeof baseSchema>, 'authMode' | 'authAdminRole'> & {
  storage: StorageConnection;
  cosmos: CosmosConnection;
  serviceBus: ServiceBusConnection | null;
  auth: AuthConfig;
};

type Env = Record<string, string | undefined>;

/**
 * Variables the Azure platform sets in a function app's process (App Service: WEBSITE_INSTANCE_ID, WEBSITE_SITE_NAME,
 * WEBSITE_OWNER_NAME, WEBSITE_SKU; Flex Consumption: WEBSITE_SKU=FlexConsumption, WEBSITE_POD_NAME,
 * LEGION_SERVICE_HOST, as the Functions host's own IsFlexConsumptionSku check reads them). Any of them means "this is
 * Azure", where local mode (dev tokens signed with a public secret) must never run. WEBSITE_HOSTNAME is left out:
 * Core Tools sets it to localhost.
 */
export const AZURE_PLATFORM_VARIABLES = ['WEBSITE_INSTANCE_ID', 'WEBSITE_SITE_NAME', 'WEBSITE_OWNER_NAME', 'WEBSITE_SKU', 'WEBSITE_POD_NAME', 'LEGION_SERVICE_HOST'] as const;

/** Secrets published in this repository (local.settings.sample.json): never valid outside local mode. */
export const PUBLIC_SAMPLE_SECRETS: readonly string[] = [
  'local-dev-secret-only-valid-against-emulators-0123456789',
  'local-machine-secret-only-valid-against-emulators-0123456789',
];

function required(env: Env, name: string, why: string): string {
  const value = env[name]?.trim();
  if (!value) throw new ConfigError(`Missing app setting ${name} (${why}).`);
  return value;
}

function parseCosmosConnectionString(value: string): { endpoint: string; key: string } {
  const parts = Object.fromEntries(
    value
      .split(';')
      .filter(Boolean)
      .map((p) => {
        const i = p.indexOf('=');
        return [p.slice(0, i).trim().toLowerCase(), p.slice(i + 1).trim()];
      }),
  );
  if (!parts.accountendpoint || !parts.accountkey) {
    throw new ConfigError(
      `Invalid app setting ${SETTINGS.cosmosConnection}: expected "AccountEndpoint=https://...;AccountKey=...;".`,
    );
  }
  return { endpoint: parts.accountendpoint, key: parts.accountkey };
}

/**
 * A Key Vault / App Configuration reference the platform could not resolve stays in the setting as its literal text
 * (documented App Service behaviour). That text is public (it names the vault), so it must never pass for a secret:
 * `@Microsoft.KeyVault(SecretUri=https://kv-x.vault.azure.net/...)` is longer than 32 characters.
 */
const UNRESOLVED_REFERENCE = /^\s*@Microsoft\.(KeyVault|AppConfiguration)\s*\(/i;

/** Throws ConfigError naming every app setting the code reads whose value is still an unresolved reference. */
export function assertNoUnresolvedReferences(env: Env): void {
  const names = Object.values(SETTINGS).filter((name) => UNRESOLVED_REFERENCE.test(env[name] ?? ''));
  if (names.length > 0) {
    throw new ConfigError(
      `App setting ${names.join(', ')} is an unresolved ${/AppConfiguration/i.test(env[names[0]!]!) ? 'App Configuration' : 'Key Vault'} reference: ` +
        'the platform could not read the secret (check the Key Vault Secrets User role of the keyVaultReferenceIdentity and the ' +
        'secret URI; the portal shows the reference status under Environment variables). Refusing to run with it.',
    );
  }
}

/** Reads and validates every setting. Throws ConfigError naming the first bad one. */
export function loadConfig(env: Env = process.env): Config {
  assertNoUnresolvedReferences(env);
  const raw: Record<string, string | undefined> = {};
  for (const key of Object.keys(baseSchema.shape)) raw[key] = env[SETTINGS[key as keyof typeof SETTINGS]]?.trim() || undefined;
  raw.mode ??= 'local';
  raw.transport ??= raw.mode === 'local' ? 'storage-queue' : 'servicebus';
  raw.authMode ??= raw.mode === 'local' ? 'local' : 'entra';

  const parsed = baseSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const key = String(issue.path[0]) as keyof typeof SETTINGS;
    throw new ConfigError(`Invalid app setting ${SETTINGS[key] ?? key}: ${issue.message}.`);
  }
  const base = parsed.data;
  const local = base.mode === 'local';
  const platform = AZURE_PLATFORM_VARIABLES.find((name) => env[name]?.trim());
  if (local && platform) {
    throw new ConfigError(
      `Invalid app setting ${SETTINGS.mode}: local mode is refused in Azure (the platform set ${platform}); local mode trusts public sample secrets. Use ${SETTINGS.mode}=azure.`,
    );
  }
  if (!local && env[SETTINGS.authDevSecret]?.trim()) {
    throw new ConfigError(`App setting ${SETTINGS.authDevSecret} is set outside local mode; remove it (dev tokens exist only in local mode).`);
  }

  let storage: StorageConnection;
  if (env[SETTINGS.storageBlobServiceUri]) {
    storage = {
      kind: 'identity',
      blobServiceUri: env[SETTINGS.storageBlobServiceUri]!,
      queueServiceUri:
        base.transport === 'storage-queue'
          ? required(env, SETTINGS.storageQueueServiceUri, 'queue endpoint of the LoRA storage account, for DISPATCH_TRANSPORT=storage-queue')
          : env[SETTINGS.storageQueueServiceUri] || undefined,
      clientId: env[SETTINGS.storageClientId] || undefined,
    };
  } else if (local) {
    storage = {
      kind: 'connectionString',
      connectionString: required(env, SETTINGS.storageConnection, 'Azurite connection string in local mode'),
    };
  } else {
    throw new ConfigError(
      `Missing app setting ${SETTINGS.storageBlobServiceUri} (identity-based storage connection; connection strings are refused outside local mode).`,
    );
  }

  let cosmos: CosmosConnection;
  if (env[SETTINGS.cosmosEndpoint]) {
    cosmos = { kind: 'identity', endpoint: env[SETTINGS.cosmosEndpoint]!, clientId: env[SETTINGS.cosmosClientId] || undefined };
  } else if (local) {
    cosmos = {
      kind: 'connectionString',
      ...parseCosmosConnectionString(required(env, SETTINGS.cosmosConnection, 'cosmosdb-server connection string in local mode')),
      emulatorCertPath: env[SETTINGS.cosmosEmulatorCertPath] || undefined,
    };
  } else {
    throw new ConfigError(
      `Missing app setting ${SETTINGS.cosmosEndpoint} (identity-based Cosmos connection; keys are refused outside local mode).`,
    );
  }

  let serviceBus: ServiceBusConnection | null = null;
  if (env[SETTINGS.serviceBusNamespace]) {
    serviceBus = {
      kind: 'identity',
      fullyQualifiedNamespace: env[SETTINGS.serviceBusNamespace]!,
      clientId: env[SETTINGS.serviceBusClientId] || undefined,
    };
  } else if (env[SETTINGS.serviceBusConnection]) {
    if (!local) {
      throw new ConfigError(
        `App setting ${SETTINGS.serviceBusConnection} holds a connection string; outside local mode use ${SETTINGS.serviceBusNamespace}.`,
      );
    }
    serviceBus = { kind: 'connectionString', connectionString: env[SETTINGS.serviceBusConnection]! };
  }
  if (base.transport === 'servicebus' && !serviceBus) {
    throw new ConfigError(`Missing app setting ${SETTINGS.serviceBusNamespace} (DISPATCH_TRANSPORT is servicebus).`);
  }

  // No fallback from one secret to another: each is set on its own, and they differ.
  const machineTokenSecret = required(env, SETTINGS.machineTokenSecret, 'HMAC secret for machine tokens, at least 32 chars (a Key Vault reference in Azure)');
  if (machineTokenSecret.length < 32) throw new ConfigError(`Invalid app setting ${SETTINGS.machineTokenSecret}: use at least 32 characters.`);
  if (!local && PUBLIC_SAMPLE_SECRETS.includes(machineTokenSecret)) {
    throw new ConfigError(`Invalid app setting ${SETTINGS.machineTokenSecret}: it is a public sample value from this repository; generate a secret.`);
  }
  let auth: AuthConfig;
  if (base.authMode === 'local') {
    if (!local) throw new ConfigError(`Invalid app setting ${SETTINGS.authMode}: local dev tokens are refused outside local mode.`);
    const devSecret = required(env, SETTINGS.authDevSecret, 'HMAC secret for local dev tokens, at least 32 chars');
    if (devSecret.length < 32) throw new ConfigError(`Invalid app setting ${SETTINGS.authDevSecret}: use at least 32 characters.`);
    if (devSecret === machineTokenSecret) {
      throw new ConfigError(`Invalid app settings ${SETTINGS.authDevSecret} and ${SETTINGS.machineTokenSecret}: they must differ (a dev token must never verify as a machine token).`);
    }
    auth = { mode: 'local', devSecret, machineTokenSecret, adminRole: base.authAdminRole };
  } else {
    auth = {
      mode: 'entra',
      issuer: required(env, SETTINGS.authIssuer, 'Entra ID token issuer'),
      audience: required(env, SETTINGS.authAudience, 'Entra ID application ID URI or client id'),
      jwksUri: required(env, SETTINGS.authJwksUri, 'Entra ID JWKS URL'),
      machineTokenSecret,
      adminRole: base.authAdminRole,
    };
  }

  const { authMode: _m, authAdminRole: _r, ...rest } = base;
  return { ...rest, storage, cosmos, serviceBus, auth };
}

let cached: Config | undefined;
/** The process-wide config, loaded on first use. */
export function getConfig(): Config {
  cached ??= loadConfig();
  return cached;
}
/** Tests and the dev host swap settings between runs. */
export function resetConfigForTests(): void {
  cached = undefined;
}

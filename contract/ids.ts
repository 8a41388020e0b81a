// Identifier rules shared by the API, the scheduler and the agent.
import { randomBytes } from 'node:crypto';
import { z } from './zod.js';

const ALPHABET = '0123456789abcdefghjkmnpqrstvwxyz'; // Crockford base32, lower case: safe in URLs, blob names, file names.

function randomSuffix(length = 26): string {
  const bytes = randomBytes(length);
  let out = '';
  for (const b of bytes) out += ALPHABET[b & 31];
  return out;
}

export const newLoraId = (): string => `lora_${randomSuffix()}`;
export const newJobId = (): string => `job_${randomSuffix()}`;

export const loraIdSchema = z
  .string()
  .regex(/^lora_[0-9a-z]{26}$/, 'must be a flat_file_id such as lora_0123456789abcdefghjkmnpqrs')
  .openapi({ example: 'lora_7m2q9x4k1c8v0b3n6h5j2r9t4w' });

export const jobIdSchema = z
  .string()
  .regex(/^job_[0-9a-z]{26}$/, 'must be a job id such as job_0123456789abcdefghjkmnpqrs')
  .openapi({ example: 'job_4k1c8v0b3n6h5j2r9t4w7m2q9x' });

/**
 * Machine ids double as Service Bus session ids and as part of a Storage queue name (`<prefix><id>`, ≤ 63 chars,
 * lower case, no double hyphens), so they follow the stricter queue rules.
 */
export const machineIdSchema = z
  .string()
  .regex(/^[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){1,46}$/, 'must be 2-47 chars of a-z, 0-9 and single hyphens')
  .openapi({ example: 'gpu-a100-01' });

/** A shared LoRA's file name: also the agent's check on its pinned list and its cache layout. */
export const SHARED_LORA_FILENAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,114}\.safetensors$/;

/** Shared (system) LoRAs are identified by file name, as in ADR-010. */
export const sharedFilenameSchema = z
  .string()
  .regex(SHARED_LORA_FILENAME, 'must be a plain file name ending in .safetensors')
  .openapi({ example: 'detail-tweaker-xl.safetensors' });

/** Tenant = the token subject. Entra subjects are base64url; local subjects are plain names. */
export const tenantIdSchema = z.string().regex(/^[A-Za-z0-9._-]{1,128}$/, 'must be 1-128 chars of A-Z a-z 0-9 . _ -');

export const poolSchema = z
  .string()
  .regex(/^[a-z][a-z0-9-]{0,31}$/, 'must be a lower-case pool name such as standard')
  .openapi({ example: 'standard' });

export const DEFAULT_POOL = 'standard';

export const sha256HexSchema = z.string().regex(/^[0-9a-f]{64}$/);

/** Keeps only what is safe to show back to a user: no path parts, no control characters, bounded length. */
export function sanitizeOriginalName(name: string): string {
  const base = name.split(/[\\/]/).pop() ?? '';
  const cleaned = base
    .normalize('NFC')
    .replace(/[\u0000-\u001f\u007f<>:"|?*]/g, '_')
    .trim()
    .slice(0, 200);
  return cleaned.length > 0 ? cleaned : 'unnamed.safetensors';
}

/**
 * W3C Trace Context `traceparent` (version-traceid-spanid-flags). Optional on the dispatch message and the claim so one
 * trace follows a job across the Functions app and the agent; messages without it stay valid.
 */
export const traceparentSchema = z
  .string()
  .regex(/^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/, 'must be a W3C traceparent such as 00-<32 hex>-<16 hex>-01')
  .openapi({ example: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' });

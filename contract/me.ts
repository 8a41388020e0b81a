// Who the caller is and how much of their LoRA quota they use: what the web app needs to draw its header and quota bar.
import { z } from './zod.js';

export const meSchema = z
  .object({
    subject: z.string(),
    role: z.enum(['user', 'admin']),
    quota: z.object({
      max_loras: z.number().int(),
      used_loras: z.number().int(),
      max_bytes: z.number().int(),
      used_bytes: z.number().int(),
    }),
  })
  .openapi('Me');
export type Me = z.infer<typeof meSchema>;

/** GET /api/app/config.json: how the web app signs in here (dev tokens locally, Entra ID with MSAL in Azure). */
export const webClientConfigSchema = z
  .discriminatedUnion('auth', [
    z.object({ auth: z.literal('local') }),
    z.object({
      auth: z.literal('entra'),
      client_id: z.string(),
      authority: z.string(),
      scopes: z.array(z.string()),
      admin_role: z.string(),
    }),
  ])
  .openapi('WebClientConfig');
export type WebClientConfig = z.infer<typeof webClientConfigSchema>;

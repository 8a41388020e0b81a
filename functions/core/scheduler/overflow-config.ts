// POOL_OVERFLOW: which pools a pool's jobs may overflow to (overflow.ts). Two spellings, one meaning:
//   compact  `gpu-a>gpu-b,gpu-c;gpu-b>gpu-a`   (pool>targets in order of preference; routes separated by ';')
//   JSON     `{"gpu-a":["gpu-b","gpu-c"],"gpu-b":["gpu-a"]}`
// Empty = off. Validated with zod at startup (config.ts), so a typo stops the app with the setting named.
import { z } from 'zod';
import { poolSchema } from '../../../contract/ids.js';

/** pool → the pools its jobs may overflow to, in order of preference. */
export type OverflowRoutes = ReadonlyMap<string, readonly string[]>;

const routesSchema = z
  .record(z.string(), z.array(z.string()).min(1, 'lists no pool to overflow to'))
  .superRefine((routes, ctx) => {
    for (const [from, targets] of Object.entries(routes)) {
      const bad = [from, ...targets].find((p) => !poolSchema.safeParse(p).success);
      if (bad !== undefined) ctx.addIssue({ code: 'custom', message: `"${bad}" is not a pool name (lower-case letters, digits and -, starting with a letter)` });
      if (targets.includes(from)) ctx.addIssue({ code: 'custom', message: `pool ${from} lists itself as an overflow target` });
      const seen = new Set<string>();
      for (const t of targets) {
        if (seen.has(t)) ctx.addIssue({ code: 'custom', message: `pool ${from} lists ${t} twice` });
        seen.add(t);
      }
    }
  });

/** The compact spelling as the JSON object it stands for; throws on a malformed route. */
function compactToObject(text: string): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const part of text.split(';').map((p) => p.trim()).filter(Boolean)) {
    const m = /^([^>\s]+)\s*>\s*(.+)$/.exec(part);
    if (!m) throw new Error(`"${part}" is not a route; write pool>target[,target...], e.g. gpu-a>gpu-b,gpu-c`);
    const from = m[1]!;
    if (from in out) throw new Error(`pool ${from} has two routes; list all its targets in one (${from}>a,b)`);
    out[from] = m[2]!.split(',').map((t) => t.trim());
  }
  return out;
}

/** Parses a POOL_OVERFLOW value; throws an Error saying what is wrong. Empty or blank = no routes (off). */
export function parseOverflowRoutes(text: string | undefined): OverflowRoutes {
  const s = text?.trim() ?? '';
  if (s === '') return new Map();
  let raw: unknown;
  if (s.startsWith('{')) {
    try {
      raw = JSON.parse(s);
    } catch {
      throw new Error('is not valid JSON; write {"pool-a":["pool-b"]} or the compact pool-a>pool-b');
    }
  } else {
    raw = compactToObject(s);
  }
  const parsed = routesSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const where = issue.path.length > 0 && issue.code !== 'custom' ? `pool ${String(issue.path[0])}: ` : '';
    throw new Error(`${where}${issue.code === 'invalid_type' ? 'must map each pool to a list of pool names' : issue.message}`);
  }
  return new Map(Object.entries(parsed.data));
}

/** The zod type of the setting, for config.ts: a string in, the routes out, a clear issue on a bad value. */
export const overflowRoutesSetting = z
  .string()
  .optional()
  .transform((s, ctx): OverflowRoutes => {
    try {
      return parseOverflowRoutes(s);
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: (err as Error).message });
      return z.NEVER;
    }
  });

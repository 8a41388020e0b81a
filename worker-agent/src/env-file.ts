// Reading the agent's raw settings: env files, sizes, command lines. Pure text handling; config.ts validates.
import { readFileSync } from 'node:fs';

export class AgentConfigError extends Error {
  override readonly name = 'AgentConfigError';
}

export type Env = Record<string, string | undefined>;

const GiB = 1024 ** 3;
const UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  k: 1024,
  kb: 1024,
  kib: 1024,
  m: 1024 ** 2,
  mb: 1024 ** 2,
  mib: 1024 ** 2,
  g: GiB,
  gb: GiB,
  gib: GiB,
  t: 1024 ** 4,
  tb: 1024 ** 4,
  tib: 1024 ** 4,
};

/**
 * "53687091200", "50GB", "50 GiB", "300MB", "1.5G" → bytes. Units are binary (1 GB = 1 GiB = 1024³ bytes), the same
 * convention as the cache's 50 GB default. Returns undefined for anything else.
 */
export function parseBytes(value: string): number | undefined {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(value);
  if (!m) return undefined;
  const unit = UNITS[m[2]!.toLowerCase()];
  if (unit === undefined) return undefined;
  const n = Math.floor(Number(m[1]) * unit);
  return Number.isSafeInteger(n) && n > 0 ? n : undefined;
}

/**
 * A command line without a shell: a JSON array (`["python3", "run.py", "--fast"]`), or words separated by spaces
 * where single or double quotes group words and a backslash escapes the next character. No variables, globs, pipes.
 */
export function splitCommand(value: string): string[] {
  const trimmed = value.trim();
  if (trimmed.startsWith('[')) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(trimmed);
    } catch {
      throw new Error('looks like a JSON array but does not parse');
    }
    if (!Array.isArray(parsed) || parsed.some((p) => typeof p !== 'string')) throw new Error('must be a JSON array of strings');
    return parsed as string[];
  }
  const words: string[] = [];
  let current = '';
  let inWord = false;
  let quote: '"' | "'" | null = null;
  for (let i = 0; i < trimmed.length; i++) {
    const c = trimmed[i]!;
    if (quote) {
      if (c === quote) quote = null;
      else if (c === '\\' && quote === '"' && i + 1 < trimmed.length) current += trimmed[++i];
      else current += c;
      continue;
    }
    if (c === '"' || c === "'") {
      quote = c;
      inWord = true;
    } else if (c === '\\' && i + 1 < trimmed.length) {
      current += trimmed[++i];
      inWord = true;
    } else if (/\s/.test(c)) {
      if (inWord) words.push(current);
      current = '';
      inWord = false;
    } else {
      current += c;
      inWord = true;
    }
  }
  if (quote) throw new Error(`unterminated ${quote} quote`);
  if (inWord) words.push(current);
  return words;
}

/**
 * KEY=VALUE lines (systemd EnvironmentFile / dotenv style): `#` comments, blank lines, an optional `export `, values
 * optionally in single quotes (literal) or double quotes (\n, \", \\ escapes). No interpolation.
 */
export function parseEnvFile(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  const lines = text.split(/\r?\n/);
  for (let n = 0; n < lines.length; n++) {
    const line = lines[n]!.trim();
    if (!line || line.startsWith('#')) continue;
    const m = /^(?:export\s+)?([A-Za-z_][A-Za-z0-9_.]*)\s*=\s*(.*)$/.exec(line);
    if (!m) throw new AgentConfigError(`env file line ${n + 1}: expected KEY=VALUE, got ${JSON.stringify(line.slice(0, 80))}`);
    let value = m[2]!;
    if (value.startsWith("'")) {
      const end = value.indexOf("'", 1);
      if (end < 0) throw new AgentConfigError(`env file line ${n + 1}: unterminated ' quote for ${m[1]}`);
      value = value.slice(1, end);
    } else if (value.startsWith('"')) {
      let v = '';
      let i = 1;
      for (; i < value.length && value[i] !== '"'; i++) {
        if (value[i] === '\\' && i + 1 < value.length) {
          const e = value[++i]!;
          v += e === 'n' ? '\n' : e === 't' ? '\t' : e;
        } else v += value[i];
      }
      if (i >= value.length) throw new AgentConfigError(`env file line ${n + 1}: unterminated " quote for ${m[1]}`);
      value = v;
    } else {
      value = value.replace(/\s+#.*$/, '').trim(); // trailing comment on an unquoted value
    }
    out[m[1]!] = value;
  }
  return out;
}

/** The environment the agent reads: the env file (if any) under the process environment. */
export function readAgentEnv(envFile: string | undefined, env: Env = process.env): Env {
  if (!envFile) return { ...env };
  let text: string;
  try {
    text = readFileSync(envFile, 'utf8');
  } catch (err) {
    throw new AgentConfigError(`cannot read --env-file ${envFile}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  const fromFile = parseEnvFile(text);
  const merged: Env = { ...fromFile };
  for (const [k, v] of Object.entries(env)) if (v !== undefined && v !== '') merged[k] = v;
  return merged;
}

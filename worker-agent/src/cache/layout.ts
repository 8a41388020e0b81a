// Where the cache keeps what, and which keys and claims are acceptable.
//
// Layout under cacheDir:
//   loras/user/<flat_file_id>.safetensors   user LoRAs
//   loras/shared/<filename>                 shared (system) LoRAs
//   partial/<kind>.<key>.<sha16>.part       downloads in progress (resumable)
//   cache.db                                inventory, eviction history, counters
import { readdirSync, statSync, type Dirent } from 'node:fs';
import { join } from 'node:path';
import { SHARED_LORA_FILENAME } from '../../../contract/ids.js';
import type { ClaimedLora } from '../../../contract/jobs.js';
import type { LoraKind } from './cache-db.js';

/** The contract's id rules: they are also what keeps cache keys out of other paths. */
export const USER_LORA_KEY = /^lora_[0-9a-z]{26}$/;
export { SHARED_LORA_FILENAME };
/** kind, key and the first 16 hex characters of the sha256 of a partial download's file name. */
export const PARTIAL_NAME = /^(user|shared)\.(.+)\.([0-9a-f]{16})\.part$/;

/** A claimed LoRA whose key, hash, size or URL is malformed. Not retryable. */
export class InvalidLoraError extends Error {
  override readonly name = 'InvalidLoraError';
}

/** One LoRA of a job, validated. */
export interface WantedLora {
  kind: LoraKind;
  key: string;
  sizeBytes: number;
  sha256: string;
  url: string;
  /** A fresh URL when `url` has expired (from the control plane, bound to the job's claim). */
  refreshUrl?: () => Promise<string>;
}

export interface PartialFile {
  path: string;
  size: number;
  mtimeMs: number;
}

export const isEnoent = (err: unknown): boolean => (err as NodeJS.ErrnoException)?.code === 'ENOENT';

export function isValidKey(kind: LoraKind, key: string): boolean {
  return kind === 'user' ? USER_LORA_KEY.test(key) : SHARED_LORA_FILENAME.test(key);
}

/** Path relative to cacheDir, as stored in the DB. */
export function relativePath(kind: LoraKind, key: string): string {
  return kind === 'user' ? join('loras', 'user', `${key}.safetensors`) : join('loras', 'shared', key);
}

/** The directories and file names of one cache directory. */
export class CacheLayout {
  constructor(readonly cacheDir: string) {}

  get dbPath(): string {
    return join(this.cacheDir, 'cache.db');
  }

  get partialDir(): string {
    return join(this.cacheDir, 'partial');
  }

  /** The directories a cache needs, created on open. */
  get directories(): string[] {
    return [join(this.cacheDir, 'loras', 'user'), join(this.cacheDir, 'loras', 'shared'), this.partialDir];
  }

  kindDir(kind: LoraKind): string {
    return join(this.cacheDir, 'loras', kind);
  }

  pathFor(kind: LoraKind, key: string): string {
    return join(this.cacheDir, relativePath(kind, key));
  }

  partialPathFor(w: Pick<WantedLora, 'kind' | 'key' | 'sha256'>): string {
    return join(this.partialDir, `${w.kind}.${w.key}.${w.sha256.slice(0, 16)}.part`);
  }

  /** Partial files not owned by a download in flight (`active` holds the paths of those). */
  idlePartials(active: ReadonlySet<string>): PartialFile[] {
    let ents: Dirent[];
    try {
      ents = readdirSync(this.partialDir, { withFileTypes: true });
    } catch (err) {
      if (isEnoent(err)) return [];
      throw err;
    }
    const out: PartialFile[] = [];
    for (const ent of ents) {
      if (!ent.isFile()) continue;
      const path = join(this.partialDir, ent.name);
      if (active.has(path)) continue;
      try {
        const st = statSync(path);
        out.push({ path, size: st.size, mtimeMs: st.mtimeMs });
      } catch (err) {
        if (!isEnoent(err)) throw err;
      }
    }
    return out;
  }
}

/** Validates and de-duplicates a job's LoRAs. */
export function normalizeLoras(loras: readonly ClaimedLora[]): WantedLora[] {
  const byKey = new Map<string, WantedLora>();
  for (const l of loras) {
    if (l.kind !== 'user' && l.kind !== 'shared') throw new InvalidLoraError(`unknown LoRA kind ${String(l.kind)}`);
    if (!isValidKey(l.kind, l.key)) {
      throw new InvalidLoraError(`invalid ${l.kind} LoRA key ${JSON.stringify(String(l.key).slice(0, 200))}`);
    }
    if (!Number.isSafeInteger(l.size_bytes) || l.size_bytes < 0) {
      throw new InvalidLoraError(`invalid size_bytes ${l.size_bytes} for ${l.key}`);
    }
    if (typeof l.sha256 !== 'string' || !/^[0-9a-fA-F]{64}$/.test(l.sha256)) {
      throw new InvalidLoraError(`invalid sha256 for ${l.key}`);
    }
    let url: URL;
    try {
      url = new URL(l.download_url);
    } catch {
      throw new InvalidLoraError(`invalid download_url for ${l.key}`);
    }
    if (url.protocol !== 'https:' && url.protocol !== 'http:') {
      throw new InvalidLoraError(`download_url for ${l.key} must be http(s)`);
    }
    const w: WantedLora = { kind: l.kind, key: l.key, sizeBytes: l.size_bytes, sha256: l.sha256.toLowerCase(), url: l.download_url };
    const prev = byKey.get(l.key);
    if (prev && (prev.sha256 !== w.sha256 || prev.kind !== w.kind || prev.sizeBytes !== w.sizeBytes)) {
      throw new InvalidLoraError(`${l.key} is listed twice with different contents`);
    }
    byKey.set(l.key, w);
  }
  return [...byKey.values()];
}

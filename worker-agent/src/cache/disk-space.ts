// The cache's byte budget says how much the cache may hold, not how much the disk has: other files (ComfyUI outputs,
// logs, models) share the file system. Before every download the agent checks the file system's free space against
// what is still to be written plus CACHE_DISK_RESERVE; when short it evicts unused, unpinned LoRAs (least recently
// used first) while that helps, and otherwise fails the attempt as the machine's failure (DiskFullError: the job is
// handed back without spending an attempt and the heartbeat reports the machine unhealthy until there is room).
// A download that runs out of space anyway, and a cache.db write that does (SQLITE_FULL), end the same way, with the
// partial file removed and the database untouched.
import { statSync, statfsSync } from 'node:fs';
import { formatBytes, type CacheEntryLike } from './eviction.js';

export const DEFAULT_DISK_RESERVE_BYTES = 1024 ** 3;

/** The cache's file system is (nearly) full. `code` ENOSPC: job-run.ts reports it as the machine's failure. */
export class DiskFullError extends Error {
  override readonly name = 'DiskFullError';
  readonly code = 'ENOSPC';
}

/** An error that means "no space left": the file system's (ENOSPC, EDQUOT) or SQLite's (SQLITE_FULL). */
export function isDiskFull(err: unknown): boolean {
  const code = (err as { code?: unknown } | undefined)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT' || code === 'SQLITE_FULL';
}

/** Free bytes for an unprivileged writer on the file system holding `dir`, or undefined when unknown. */
export function freeDiskBytes(dir: string): number | undefined {
  try {
    const fs = statfsSync(dir);
    return Number(fs.bavail) * Number(fs.bsize);
  } catch {
    return undefined;
  }
}

export interface DiskRoomRequest {
  dir: string;
  key: string;
  /** Bytes the download still has to write. */
  needBytes: number;
  reserveBytes: number;
  /** The cache's entries as the planner sees them (pinned and in-use ones are never touched). */
  entries: readonly CacheEntryLike[];
  /** Evicts these keys (files deleted, rows removed) before the next look at the free space. */
  evict(keys: string[]): void;
  /** Injected by tests; default statfs. */
  free?: (dir: string) => number | undefined;
}

/**
 * Makes sure `needBytes` + `reserveBytes` are free, evicting unused LoRAs one at a time (least recently used first)
 * while short. Returns the evicted keys; throws DiskFullError when even that cannot make room. An unknown free
 * space (statfs unsupported) is not a reason to refuse.
 */
export function ensureDiskRoom(r: DiskRoomRequest): string[] {
  const free = r.free ?? freeDiskBytes;
  const want = r.needBytes + r.reserveBytes;
  let have = free(r.dir);
  if (have === undefined || have >= want) return [];
  const candidates = r.entries
    .filter((e) => !e.pinned && e.inUse === 0)
    .sort((a, b) => a.lastUsedMs - b.lastUsedMs || (a.key < b.key ? -1 : 1));
  // Evict only if the candidates can make room at all: never throw away the cache for nothing.
  const reclaimable = candidates.reduce((s, e) => s + e.sizeBytes, 0);
  if (have + reclaimable < want) {
    throw new DiskFullError(
      `disk full: ${formatBytes(have)} free on the cache's file system, ${r.key} needs ${formatBytes(r.needBytes)} + ` +
        `CACHE_DISK_RESERVE ${formatBytes(r.reserveBytes)}; evicting every unused LoRA would free only ${formatBytes(reclaimable)}`,
    );
  }
  const evicted: string[] = [];
  for (const e of candidates) {
    r.evict([e.key]);
    evicted.push(e.key);
    have = free(r.dir) ?? want;
    if (have >= want) return evicted;
  }
  throw new DiskFullError(`disk full: ${formatBytes(have)} free on the cache's file system after evicting ${evicted.length} unused LoRAs; ${r.key} needs ${formatBytes(want)} with the reserve`);
}

/** ENOSPC / EDQUOT / SQLITE_FULL as one DiskFullError (job-run.ts: the machine's failure); anything else unchanged. */
export function asDiskFull(err: unknown): unknown {
  if (err instanceof DiskFullError || !isDiskFull(err)) return err;
  return new DiskFullError(`disk full: ${(err as Error).message}`, { cause: err });
}

export function fileSizeOrZero(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}

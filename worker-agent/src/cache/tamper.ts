// Cached LoRA files are handed to jobs as they are, so a file changed after it was verified (by a job running as the
// agent's user, an operator, a disk error) must never reach a job. Files are 0444 in directories only the agent can
// write; on top of that:
//   - every use compares a stamp of the file (size, inode, mtime, ctime: one stat, microseconds) with the one recorded
//     when it was verified. ctime cannot be set back by a user, so an in-place write, a utimes() to hide it, a
//     chmod or a replaced file all show;
//   - the first use of each file after an agent start re-hashes it (sha256) in full: that covers changes made while no
//     agent was watching (the stamp cannot prove anything across a reboot or offline edits).
// A changed stamp is hashed too (legitimate metadata changes, e.g. a recursive chown, do not cost a download). A file
// whose hash differs is evicted and downloaded again: never handed to a job. Cost: README "Cache integrity".
import { createHash } from 'node:crypto';
import { createReadStream, rmSync, statSync } from 'node:fs';
import type { CacheLogger } from './budget.js';
import type { CacheDb } from './cache-db.js';
import { isEnoent, type WantedLora } from './layout.js';

/** size:inode:mtimeNs:ctimeNs of a file, or undefined when it is not there. */
export function fileStamp(path: string): string | undefined {
  try {
    const st = statSync(path, { bigint: true });
    return `${st.size}:${st.ino}:${st.mtimeNs}:${st.ctimeNs}`;
  } catch (err) {
    if (isEnoent(err)) return undefined;
    throw err;
  }
}

/** sha256 (hex) of a file, streamed. */
export async function sha256File(path: string, signal?: AbortSignal): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: 4 * 1024 * 1024, signal })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

export class TamperGuard {
  /** `key:sha256` verified by hash since this process started. */
  private readonly verified = new Set<string>();
  private readonly hashing = new Map<string, Promise<boolean>>();

  constructor(
    private readonly log: CacheLogger,
    private readonly pathFor: (w: WantedLora) => string,
  ) {}

  /** The file's stamp matches the one recorded at verification: what every use checks (synchronously). */
  unchanged(db: CacheDb, w: WantedLora): boolean {
    const row = db.get(w.key);
    return !!row && row.stamp !== null && fileStamp(this.pathFor(w)) === row.stamp;
  }

  /**
   * Before a use: a registered file of this version that was not hashed since the agent started, or whose stamp
   * changed, is hashed now. A mismatch evicts it (the caller then downloads it again). Concurrent uses share one hash.
   */
  async verify(db: CacheDb, w: WantedLora, signal?: AbortSignal): Promise<void> {
    const row = db.get(w.key);
    if (!row || row.sha256 !== w.sha256 || row.kind !== w.kind) return;
    const id = `${w.key}:${w.sha256}`;
    const path = this.pathFor(w);
    const before = fileStamp(path);
    if (before === undefined) return; // gone: the use's own check drops the row
    if (this.verified.has(id) && before === row.stamp) return;
    let pending = this.hashing.get(id);
    if (!pending) {
      pending = this.hashAndSettle(db, w, path, before, row.stamp, signal).finally(() => this.hashing.delete(id));
      this.hashing.set(id, pending);
    }
    await pending;
  }

  private async hashAndSettle(db: CacheDb, w: WantedLora, path: string, before: string, recorded: string | null, signal?: AbortSignal): Promise<boolean> {
    const id = `${w.key}:${w.sha256}`;
    const t0 = performance.now();
    let actual: string;
    try {
      actual = await sha256File(path, signal);
    } catch (err) {
      signal?.throwIfAborted();
      if (isEnoent(err)) return false;
      actual = `unreadable (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`;
    }
    const ms = Math.round(performance.now() - t0);
    const live = db.get(w.key);
    if (!live || live.sha256 !== w.sha256) return false; // replaced meanwhile
    if (actual === w.sha256) {
      // The stamp from before the hash: a change during hashing shows at the next check and is hashed again.
      db.setStamp(w.key, before);
      this.verified.add(id);
      if (recorded !== null && recorded !== before) this.log.info({ key: w.key, ms }, 'cache: file metadata changed; content verified by sha256');
      else this.log.debug({ key: w.key, ms, bytes: w.sizeBytes }, 'cache: verified by sha256 (first use since start)');
      return true;
    }
    this.verified.delete(id);
    this.log.warn({ key: w.key, expected: w.sha256, actual }, 'cache: cached file does not match its sha256 (tampered or corrupted): evicting, downloading again');
    db.remove(w.key);
    rmSync(path, { force: true });
    return false;
  }

  /** A freshly downloaded and verified file: its stamp is the reference from now on. */
  registered(w: WantedLora, stamp: string | undefined): void {
    if (stamp !== undefined) this.verified.add(`${w.key}:${w.sha256}`);
  }
}

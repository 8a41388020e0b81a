// Outcomes not yet accepted by the control plane, on disk. An outcome is written here before it is sent and removed
// once the API answered (2xx, or 409: the job moved on). If the agent dies or is stopped while the API is
// unreachable, the next start sends what is left before it receives any work, so a finished job's result is never
// lost and never re-run just because its report did not get through.
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { jobEventInputSchema, type JobEventInput } from '../../contract/jobs.js';
import type { ControlPlaneApi } from './api.js';
import type { Logger } from './logger.js';

export interface OutboxEntry {
  job_id: string;
  epoch: number;
  event: JobEventInput;
  written_at: string;
}

const NAME = /^(job_[0-9a-z]{26})\.(\d+)\.json$/;

export class Outbox {
  constructor(readonly dir: string) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  }

  private path(jobId: string, epoch: number): string {
    return join(this.dir, `${jobId}.${epoch}.json`);
  }

  /** Atomic (write + rename): a crash leaves either the old state or the whole entry. */
  put(jobId: string, epoch: number, event: JobEventInput): void {
    const entry: OutboxEntry = { job_id: jobId, epoch, event, written_at: new Date().toISOString() };
    const final = this.path(jobId, epoch);
    const tmp = `${final}.tmp`;
    writeFileSync(tmp, JSON.stringify(entry), { mode: 0o600 });
    renameSync(tmp, final);
  }

  remove(jobId: string, epoch: number): void {
    rmSync(this.path(jobId, epoch), { force: true });
  }

  has(jobId: string, epoch: number): boolean {
    return this.list().some((e) => e.job_id === jobId && e.epoch === epoch);
  }

  /** Valid entries, oldest first; unreadable files are removed (they cannot be sent anyway). */
  list(): OutboxEntry[] {
    const out: OutboxEntry[] = [];
    for (const name of readdirSync(this.dir)) {
      const full = join(this.dir, name);
      if (name.endsWith('.tmp')) {
        rmSync(full, { force: true });
        continue;
      }
      const m = NAME.exec(name);
      if (!m) continue;
      try {
        const raw = JSON.parse(readFileSync(full, 'utf8')) as OutboxEntry;
        const event = jobEventInputSchema.parse(raw.event);
        if (raw.job_id !== m[1] || raw.epoch !== Number(m[2])) throw new Error('name and content disagree');
        out.push({ ...raw, event });
      } catch {
        rmSync(full, { force: true });
      }
    }
    return out.sort((a, b) => (a.written_at < b.written_at ? -1 : 1));
  }

  /** Sends outcomes an earlier process could not deliver. 409 (the job moved on) also clears an entry. */
  async deliverPending(api: Pick<ControlPlaneApi, 'event'>, signal: AbortSignal, log: Logger): Promise<void> {
    for (const e of this.list()) {
      const answer = await api.event(e.job_id, e.event, { retries: 5, maxDelayMs: 5_000, signal }).catch((err: unknown) => err as Error);
      if (answer instanceof Error) {
        log.warn({ job_id: e.job_id, err: answer.message }, 'outbox: outcome still not delivered; will retry at the next start');
        continue;
      }
      this.remove(e.job_id, e.epoch);
      log.info({ job_id: e.job_id, epoch: e.epoch, type: e.event.type, ok: answer.ok }, 'outbox: earlier outcome delivered');
    }
  }
}

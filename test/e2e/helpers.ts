// Helpers shared by the end-to-end and chaos tests: LoRA upload through the public API, job polling, event reading,
// and small statistics. Everything here goes through HTTP.
import { createHash } from 'node:crypto';
import { ApiClient, ApiRequestError } from '../../api-client/index.js';
import type { JobEvent, JobView } from '../../contract/jobs.js';
import type { TestHost } from '../support/stack.js';

import { sleep } from '../support/helpers.js';
export { sleep };
import { mapLimit } from '../../functions/core/map-limit.js';
export { mapLimit };
export const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
export const TERMINAL = new Set(['succeeded', 'failed', 'cancelled']);

export interface UploadedLora {
  /** flat_file_id (user) or filename (shared). */
  key: string;
  sha256: string;
  size: number;
  via: 'api';
}

/** POST /api/user-loras/upload (multipart `file`) as the caller; the LoRA is validated and ready when this returns. */
export async function uploadUserLora(_t: TestHost, api: ApiClient, _user: string, content: Buffer, name: string): Promise<UploadedLora> {
  const form = new FormData();
  form.set('file', new Blob([content]), name);
  const res = await api.raw('POST', 'user-loras/upload', { body: form });
  const body = (await res.json()) as { flat_file_id?: string; sha256?: string; size_bytes?: number; status?: string; error?: { message: string } };
  if (res.status !== 201) throw new Error(`upload ${name}: HTTP ${res.status} ${JSON.stringify(body)}`);
  if (body.status !== 'ready') throw new Error(`upload ${name}: status ${body.status}`);
  return { key: body.flat_file_id!, sha256: body.sha256!, size: body.size_bytes!, via: 'api' };
}

/** POST /api/shared-loras/upload (admin, multipart `file`). */
export async function uploadSharedLora(_t: TestHost, admin: ApiClient, content: Buffer, filename: string): Promise<UploadedLora> {
  const form = new FormData();
  form.set('file', new Blob([content]), filename);
  const res = await admin.raw('POST', 'shared-loras/upload', { body: form });
  const body = (await res.json()) as { filename?: string; sha256?: string; size_bytes?: number; status?: string; error?: { message: string } };
  if (res.status !== 201) throw new Error(`shared upload ${filename}: HTTP ${res.status} ${JSON.stringify(body)}`);
  return { key: body.filename ?? filename, sha256: body.sha256 ?? sha256(content), size: body.size_bytes ?? content.length, via: 'api' };
}

export async function submitJob(
  api: ApiClient,
  opts: { user?: string[]; shared?: string[]; payload?: Record<string, unknown>; pool?: string; idempotencyKey?: string } = {},
): Promise<string> {
  const loras = [
    ...(opts.user ?? []).map((id) => ({ type: 'user' as const, flat_file_id: id })),
    ...(opts.shared ?? []).map((filename) => ({ type: 'shared' as const, filename })),
  ];
  const res = await api.post<{ job_id: string; status: string }>(
    'jobs',
    { service_required: 'image-gen', pool: opts.pool, payload: opts.payload ?? {}, requirements: { loras } },
    opts.idempotencyKey ? { 'Idempotency-Key': opts.idempotencyKey } : undefined,
  );
  return res.job_id;
}

export const getJob = (api: ApiClient, id: string) => api.get<JobView>(`jobs/${id}`);

/** Polls GET /api/jobs/{id} until `done(view)` or the timeout (then throws with the last view). */
export async function waitJob(api: ApiClient, id: string, done: (j: JobView) => boolean, timeoutMs = 30_000, everyMs = 150): Promise<JobView> {
  const deadline = Date.now() + timeoutMs;
  let last: JobView | undefined;
  for (;;) {
    try {
      last = await getJob(api, id);
      if (done(last)) return last;
    } catch (err) {
      if (!(err instanceof ApiRequestError) && !(err instanceof TypeError)) throw err; // TypeError: fetch failed (host busy)
    }
    if (Date.now() > deadline) throw new Error(`job ${id} did not reach the expected state in ${timeoutMs} ms; last: ${JSON.stringify(last)}`);
    await sleep(everyMs);
  }
}

export const waitTerminal = (api: ApiClient, id: string, timeoutMs = 30_000) => waitJob(api, id, (j) => TERMINAL.has(j.status), timeoutMs);

/** Every event of a job through the `?after=` cursor. */
export async function allEvents(api: ApiClient, id: string): Promise<JobEvent[]> {
  const out: JobEvent[] = [];
  let after = 0;
  for (;;) {
    const page = await api.get<{ events: JobEvent[]; next_after: number }>(`jobs/${id}/events?after=${after}`);
    out.push(...page.events);
    if (page.events.length === 0 || page.next_after === after) return out;
    after = page.next_after;
  }
}

export function quantile(xs: number[], q: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
}

/** Settings that make the control plane fast for tests: 1 s tick and reaper, no retry backoff. */
export const FAST_SETTINGS: Record<string, string> = {
  SCHEDULER_SCHEDULE: '* * * * * *',
  REAPER_SCHEDULE: '* * * * * *',
  JOB_RETRY_BASE_SECONDS: '0',
  TENANT_MAX_ACTIVE_JOBS: '100000',
};
/** The tick and reaper period FAST_SETTINGS gives, in seconds. */
export const TICK_SECONDS = 1;

// A job's event log (Cosmos `events`, partition key /job_id): what agents report (started, progress, log, succeeded,
// failed), read back by users with an `?after=<seq>` cursor or as a server-sent event stream.
//
// Sequence numbers are allocated by the store itself: an event is created with id = its seq, and a writer that loses
// the race for a seq (409) takes the next one. So seq k+1 is only ever written by a writer that saw seq k exist: the log
// has no gaps and a reader that saw seq n has seen everything before it — polling `seq > after` never skips an event.
import type { JobEvent, JobStatus } from '../../../contract/jobs.js';
import { conflict } from '../errors.js';
import { isConflict } from '../sdk-errors.js';
import type { CoreDeps } from '../deps.js';
import { isTerminal, toJobView, type JobDoc } from './model.js';
import { readJob } from './store.js';

export interface EventDoc {
  id: string;
  job_id: string;
  doc_type: 'event';
  tenant_id: string;
  seq: number;
  at: string;
  type: string;
  epoch: number;
  attempt: number;
  machine_id: string | null;
  data: Record<string, unknown>;
}

export const MAX_EVENTS_PAGE = 500;

const seqId = (seq: number): string => String(seq).padStart(12, '0');

async function lastSeq(deps: CoreDeps, jobId: string): Promise<number> {
  const { resources } = await deps.events.items
    .query<number | null>({ query: 'SELECT VALUE MAX(c.seq) FROM c WHERE c.job_id = @j', parameters: [{ name: '@j', value: jobId }] })
    .fetchAll();
  const v = resources[0];
  return typeof v === 'number' ? v : 0;
}

export async function appendEvent(deps: CoreDeps, job: JobDoc, type: string, data: Record<string, unknown>): Promise<EventDoc> {
  let seq = (await lastSeq(deps, job.id)) + 1;
  for (let i = 0; i < 64; i++) {
    const doc: EventDoc = {
      id: seqId(seq),
      job_id: job.id,
      doc_type: 'event',
      tenant_id: job.tenant_id,
      seq,
      at: new Date(deps.now()).toISOString(),
      type,
      epoch: job.epoch,
      attempt: job.attempt,
      machine_id: job.machine_id,
      data,
    };
    try {
      await deps.events.items.create(doc);
      return doc;
    } catch (err) {
      if (!isConflict(err)) throw err;
      // Someone took this seq: it exists, so the next one is ours to try. Far behind? Jump to the end.
      seq = i % 8 === 7 ? (await lastSeq(deps, job.id)) + 1 : seq + 1;
    }
  }
  throw conflict(`too many concurrent events for job ${job.id}; retry`);
}

export async function listEvents(deps: CoreDeps, jobId: string, after: number, limit = MAX_EVENTS_PAGE): Promise<EventDoc[]> {
  const top = Math.min(Math.max(1, Math.trunc(limit)), MAX_EVENTS_PAGE);
  const { resources } = await deps.events.items
    .query<EventDoc>({
      query: `SELECT TOP ${top} * FROM c WHERE c.job_id = @j AND c.seq > @a ORDER BY c.seq ASC`,
      parameters: [
        { name: '@j', value: jobId },
        { name: '@a', value: after },
      ],
    })
    .fetchAll();
  return resources;
}

export const toEventView = (e: EventDoc): JobEvent => ({
  seq: e.seq,
  at: e.at,
  type: e.type,
  attempt: e.attempt,
  machine_id: e.machine_id,
  data: e.data,
});

export interface EventPage {
  events: JobEvent[];
  next_after: number;
  status: JobStatus;
}

export async function eventPage(deps: CoreDeps, job: JobDoc, after: number, limit?: number): Promise<EventPage> {
  const events = await listEvents(deps, job.id, after, limit);
  return { events: events.map(toEventView), next_after: events.at(-1)?.seq ?? after, status: job.status };
}

export interface StreamOptions {
  pollMs?: number;
  /** The stream ends after this long even if the job is still running; clients reconnect with Last-Event-ID. */
  maxMs?: number;
  keepaliveMs?: number;
  /** Called once when the stream ends for any reason (finished, cancelled by the client, or failed). */
  onClose?: () => void;
}

const frame = (event: string, data: unknown, id?: number): string =>
  `${id !== undefined ? `id: ${id}\n` : ''}event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;

/**
 * Server-sent events for one job: each stored event as `event: <type>` with `id: <seq>`, `event: status` whenever the
 * job's status changes (with the job view), and `event: end` once the job is terminal. Polls Cosmos every ~1 s.
 */
export function eventStream(deps: CoreDeps, tenantId: string, jobId: string, after: number, opts: StreamOptions = {}): ReadableStream<Uint8Array> {
  const pollMs = opts.pollMs ?? 1000;
  const maxMs = opts.maxMs ?? 5 * 60_000;
  const keepaliveMs = opts.keepaliveMs ?? 15_000;
  const encoder = new TextEncoder();
  const startedAt = Date.now();
  let cursor = after;
  let lastStatus: string | null = null;
  let lastSent = Date.now();
  let first = true;
  let closed = false;
  const finish = () => {
    closed = true;
    opts.onClose?.();
  };
  let wake: (() => void) | null = null;
  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        wake = null;
        resolve();
      }, ms);
      wake = () => {
        clearTimeout(t);
        resolve();
      };
    });

  const drain = async (out: string[]): Promise<void> => {
    for (;;) {
      const events = await listEvents(deps, jobId, cursor);
      for (const e of events) {
        out.push(frame(e.type, toEventView(e), e.seq));
        cursor = e.seq;
      }
      if (events.length < MAX_EVENTS_PAGE) return;
    }
  };

  return new ReadableStream<Uint8Array>({
    pull: async (controller) => {
      try {
        await step(controller);
      } catch (err) {
        finish();
        throw err;
      }
      if (closed) opts.onClose?.();
    },
    cancel: () => {
      finish();
      wake?.();
    },
  });

  async function step(controller: ReadableStreamDefaultController<Uint8Array>): Promise<void> {
      for (;;) {
        if (closed) return;
        const out: string[] = [];
        if (first) {
          out.push('retry: 2000\n\n');
          first = false;
        }
        const job = await readJob(deps.jobs, tenantId, jobId);
        if (!job) {
          out.push(frame('error', { code: 'not_found', message: `job ${jobId} not found` }));
          controller.enqueue(encoder.encode(out.join('')));
          controller.close();
          closed = true;
          return;
        }
        await drain(out);
        if (job.status !== lastStatus) {
          lastStatus = job.status;
          out.push(frame('status', toJobView(job)));
        }
        if (isTerminal(job.status)) {
          // The terminal report is stored right after the transition: one more look so it is not cut off.
          await sleep(Math.min(pollMs, 500));
          await drain(out);
          out.push(frame('end', { status: job.status, error: job.error, result: job.result ?? null, next_after: cursor }));
          controller.enqueue(encoder.encode(out.join('')));
          controller.close();
          closed = true;
          return;
        }
        if (Date.now() - startedAt >= maxMs) {
          out.push(frame('timeout', { status: job.status, next_after: cursor, message: 'stream time limit reached; reconnect with Last-Event-ID' }));
          controller.enqueue(encoder.encode(out.join('')));
          controller.close();
          closed = true;
          return;
        }
        if (out.length === 0 && Date.now() - lastSent >= keepaliveMs) out.push(': keepalive\n\n');
        if (out.length > 0) {
          lastSent = Date.now();
          controller.enqueue(encoder.encode(out.join('')));
          return;
        }
        await sleep(pollMs);
      }
  }
}

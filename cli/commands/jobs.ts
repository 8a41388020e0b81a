// `lora-router submit | jobs | job | cancel | retry | watch`: the user's side of jobs.
import { readFileSync } from 'node:fs';
import { Command, Option } from 'commander';
import { createParser, type EventSourceMessage } from 'eventsource-parser';
import { describeOverflow } from '../../contract/job-overflow.js';
import type { JobEvent, JobStatus, JobView, LoraRequirement, WaitReason } from '../../contract/jobs.js';
import { ApiRequestError, type ApiClient } from '../../api-client/index.js';
import type { CliContext } from '../index.js';

const collect = (value: string, previous: string[]): string[] => [...previous, value];
const TERMINAL = new Set<JobStatus>(['succeeded', 'failed', 'cancelled']);

function readPayload(path: string): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new Error(`--payload ${path}: ${(err as Error).message}`);
  }
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error(`--payload ${path}: must hold a JSON object`);
  return parsed as Record<string, unknown>;
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n');
}

function describeStatus(j: JobView): string {
  const where = j.machine_id ? ` on ${j.machine_id}` : '';
  const score = j.affinity_score !== null ? `, score ${round2(j.affinity_score)} (${j.policy})` : '';
  const wait = j.status === 'pending' && j.not_before ? `, retry not before ${j.not_before}` : '';
  const err = j.error ? ` — ${j.error}` : '';
  return `${j.status}${where} (attempt ${j.attempt}, epoch ${j.epoch}${score}${wait})${err}`;
}

function printEvent(e: JobEvent, out: NodeJS.WritableStream): void {
  const d = e.data as Record<string, unknown>;
  switch (e.type) {
    case 'log':
      for (const line of (d.lines as string[]) ?? []) out.write(`${String(d.stream ?? 'log').padEnd(6)}| ${line}\n`);
      return;
    case 'progress':
      out.write(`[progress] ${Math.round(Number(d.progress ?? 0) * 100)}%${d.message ? ` ${String(d.message)}` : ''}\n`);
      return;
    case 'started': {
      const c = (d.cache ?? {}) as { hit_loras?: string[]; missing_loras?: string[]; bytes_downloaded?: number; download_ms?: number };
      out.write(
        `[started] attempt ${e.attempt} on ${e.machine_id ?? '?'}: cache hits [${(c.hit_loras ?? []).join(', ')}], downloaded [${(c.missing_loras ?? []).join(', ')}] (${c.bytes_downloaded ?? 0} bytes in ${c.download_ms ?? 0} ms)\n`,
      );
      return;
    }
    case 'failed':
      out.write(`[failed] attempt ${e.attempt}: ${String(d.reason ?? '')}${d.outcome === 'retrying' ? ' — will retry' : ''}\n`);
      return;
    case 'succeeded':
      out.write(`[succeeded] ${d.result !== undefined ? JSON.stringify(d.result) : ''}\n`);
      return;
    default:
      out.write(`[${e.type}] ${JSON.stringify(d)}\n`);
  }
}

/**
 * Follows a job over server-sent events until it is terminal; reconnects with Last-Event-ID when the server ends a
 * long stream or the connection drops. Resolves with the final status.
 */
export async function watchJob(api: ApiClient, jobId: string, out: NodeJS.WritableStream = process.stdout): Promise<JobStatus> {
  let lastId: string | undefined;
  let failures = 0;
  for (;;) {
    let final: JobStatus | undefined;
    const parser = createParser({
      onEvent: (m: EventSourceMessage) => {
        if (m.id) lastId = m.id;
        const data = m.data ? (JSON.parse(m.data) as unknown) : null;
        if (m.event === 'status') out.write(`[status] ${describeStatus(data as JobView)}\n`);
        else if (m.event === 'end') final = (data as { status: JobStatus }).status;
        else if (m.event === 'error') throw new ApiRequestError(404, 'not_found', (data as { message: string }).message, data);
        else if (m.event && m.event !== 'timeout') printEvent(data as JobEvent, out);
      },
    });
    let res: Response;
    try {
      res = await api.raw('GET', `jobs/${encodeURIComponent(jobId)}/events`, {
        headers: { accept: 'text/event-stream', ...(lastId ? { 'last-event-id': lastId } : {}) },
      });
    } catch (err) {
      if (++failures > 5) throw err;
      await new Promise((r) => setTimeout(r, 1000 * failures));
      continue;
    }
    if (!res.ok) {
      const body = (await res.json().catch(() => null)) as { error?: { code?: string; message?: string } } | null;
      throw new ApiRequestError(res.status, body?.error?.code ?? 'http_error', body?.error?.message ?? `HTTP ${res.status}`, body);
    }
    failures = 0;
    const decoder = new TextDecoder();
    try {
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        parser.feed(decoder.decode(chunk, { stream: true }));
        if (final) return final;
      }
    } catch (err) {
      if (err instanceof ApiRequestError) throw err;
      // connection dropped: reconnect from the last event we saw
    }
    if (final) return final;
    await new Promise((r) => setTimeout(r, 500));
  }
}

export function register(program: Command, ctx: CliContext): void {
  program
    .command('submit')
    .description('submit a job; its LoRAs must be ready (user LoRAs by flat_file_id, shared ones by file name)')
    .option('--lora <flat_file_id>', 'a user LoRA the job needs (repeatable)', collect, [])
    .option('--shared <filename>', 'a shared LoRA the job needs (repeatable)', collect, [])
    .option('--pool <pool>', 'machine pool', 'standard')
    .option('--priority <0-9>', 'higher runs first', '5')
    .option('--payload <file.json>', 'JSON object handed to the job')
    .option('--workflow <file.json>', 'a ComfyUI workflow in API format, sent as payload.workflow (lora_name "@0" = the first LoRA given)')
    .option('--service <name>', 'service the job needs (service_required)', 'default')
    .option('--idempotency-key <key>', 'retrying with the same key returns the same job')
    .option('--watch', 'follow the job until it ends')
    .action(
      async (opts: { lora: string[]; shared: string[]; pool: string; priority: string; payload?: string; workflow?: string; service: string; idempotencyKey?: string; watch?: boolean }) => {
        const loras: LoraRequirement[] = [
          ...opts.lora.map((id) => ({ type: 'user' as const, flat_file_id: id })),
          ...opts.shared.map((filename) => ({ type: 'shared' as const, filename })),
        ];
        const body = {
          service_required: opts.service,
          pool: opts.pool,
          priority: Number(opts.priority),
          payload: { ...(opts.payload ? readPayload(opts.payload) : {}), ...(opts.workflow ? { workflow: readPayload(opts.workflow) } : {}) },
          requirements: { loras },
        };
        const api = ctx.api();
        const res = await api.post<{ job_id: string; status: JobStatus }>('jobs', body, opts.idempotencyKey ? { 'idempotency-key': opts.idempotencyKey } : undefined);
        process.stdout.write(`${res.job_id} ${res.status}\n`);
        if (opts.watch) {
          const status = await watchJob(api, res.job_id);
          if (status !== 'succeeded') process.exitCode = 1;
        }
      },
    );

  program
    .command('jobs')
    .description('list your jobs, newest first')
    .addOption(new Option('--status <status>', 'only this status').choices(['pending', 'assigned', 'running', 'succeeded', 'failed', 'cancelled']))
    .option('--limit <n>', 'at most this many', '50')
    .option('--json', 'print JSON')
    .action(async (opts: { status?: string; limit: string; json?: boolean }) => {
      const q = new URLSearchParams({ limit: opts.limit });
      if (opts.status) q.set('status', opts.status);
      const { jobs } = await ctx.api().get<{ jobs: JobView[] }>(`jobs?${q}`);
      if (opts.json) {
        process.stdout.write(`${JSON.stringify(jobs, null, 2)}\n`);
        return;
      }
      if (jobs.length === 0) {
        process.stdout.write('no jobs\n');
        return;
      }
      const rows = [['JOB', 'STATUS', 'POOL', 'MACHINE', 'ATTEMPT', 'SCORE', 'CREATED']];
      for (const j of jobs) {
        rows.push([j.job_id, j.status, j.pool, j.machine_id ?? '-', String(j.attempt), j.affinity_score === null ? '-' : round2(j.affinity_score), j.created_at]);
      }
      process.stdout.write(`${table(rows)}\n`);
    });

  program
    .command('job')
    .description('show one job (JSON), including its score breakdown; --explain: why it is where it is, in words')
    .argument('<job_id>')
    .option('--explain', 'placement (machine, policy, rounded score parts), cache hits/misses, the reason it waits')
    .action(async (id: string, opts: { explain?: boolean }) => {
      const j = await ctx.api().get<JobView>(`jobs/${encodeURIComponent(id)}`);
      if (!opts.explain) return void process.stdout.write(`${JSON.stringify(j, null, 2)}\n`);
      process.stdout.write(`${explainJob(j, Date.now()).join('\n')}\n`);
    });

  program
    .command('cancel')
    .description('cancel a job (a running job is stopped on its machine)')
    .argument('<job_id>')
    .action(async (id: string) => {
      const j = await ctx.api().delete<JobView>(`jobs/${encodeURIComponent(id)}`);
      process.stdout.write(`${j.job_id} ${describeStatus(j)}\n`);
    });

  program
    .command('retry')
    .description('run a failed or cancelled job again')
    .argument('<job_id>')
    .action(async (id: string) => {
      const j = await ctx.api().post<JobView>(`jobs/${encodeURIComponent(id)}/retry`);
      process.stdout.write(`${j.job_id} ${describeStatus(j)}\n`);
    });

  program
    .command('watch')
    .description('follow a job live (status, progress, logs) until it ends; exit code 0 only if it succeeded')
    .argument('<job_id>')
    .action(async (id: string) => {
      const status = await watchJob(ctx.api(), id);
      if (status !== 'succeeded') process.exitCode = 1;
    });
}

export const round2 = (n: number): string => (Math.round(n * 100) / 100).toFixed(2);

/** `job --explain`: what the stored job says about its placement and its wait, in words. */
export function explainJob(j: JobView, nowMs: number): string[] {
  const out = [`${j.job_id}: ${j.status}, pool ${j.pool}, attempt ${j.attempt}, epoch ${j.epoch}`];
  const parts = (b: Record<string, number> | null) =>
    Object.entries(b ?? {})
      .sort((x, y) => Math.abs(y[1]) - Math.abs(x[1]))
      .map(([k, v]) => `${k} ${round2(v)}`)
      .join(', ');
  if (j.machine_id) {
    out.push(`placed on ${j.machine_id} by ${j.policy ?? '?'}${j.affinity_score === null ? '' : ` with score ${round2(j.affinity_score)}`}`);
    if (j.overflow) out.push(`  ${describeOverflow(j.overflow)}`);
    if (Object.keys(j.score_breakdown ?? {}).length) out.push(`  score parts: ${parts(j.score_breakdown)}`);
    out.push(`  LoRAs already there: ${j.cache.hit_loras.join(', ') || '-'}; fetched: ${j.cache.missing_loras.join(', ') || '-'}`);
    const runnersUp = j.runners_up ?? [];
    if (runnersUp.length) {
      out.push('  runners-up (among the machines the policy scored):');
      for (const r of runnersUp) out.push(`    ${r.machine_id} score ${round2(r.score)}: ${parts(r.score_breakdown) || '-'}`);
    } else if (j.policy === 'fifo') {
      out.push('  runners-up: none (fifo takes the first machine with a free slot, it scores none)');
    }
    const assigned = j.assigned_at ? Date.parse(j.assigned_at) : NaN;
    const created = Date.parse(j.created_at);
    if (Number.isFinite(assigned) && Number.isFinite(created)) out.push(`  queued ${fmtSeconds((assigned - created) / 1000)} before this assignment`);
  } else if (j.status === 'pending') {
    const until = j.not_before ? Date.parse(j.not_before) : NaN;
    const last = (j.waits ?? []).at(-1);
    if (Number.isFinite(until) && until > nowMs) out.push(`waiting: retry backoff for ${Math.ceil((until - nowMs) / 1000)} s more`);
    else if (last) out.push(`waiting: ${describeWait(last.reason, last.machine_id)} (since ${last.since})`);
    else out.push('waiting: for a free slot on a live, healthy, undrained machine of the pool (see `lora-router pools`)');
  }
  const waits = j.waits ?? [];
  if (waits.length) {
    out.push('waited (recorded when the reason changed; no record = for a free slot):');
    for (const w of waits) out.push(`  ${w.since} ${describeWait(w.reason, w.machine_id)}`);
  }
  if (j.error) out.push(`last problem: ${j.error}`);
  return out;
}

function describeWait(reason: WaitReason, machineId: string | null): string {
  switch (reason) {
    case 'delayed':
      return `held back for ${machineId ?? 'a busy machine'}, which holds its LoRAs and is expected to free a slot sooner than a download elsewhere`;
    case 'no_machine_in_pool':
      return 'no live, undrained, healthy machine in its pool (see `lora-router pools`, `lora-router machines`)';
    case 'no_capacity':
      return 'no free slot in its pool';
    case 'not_before':
      return 'retry backoff';
  }
}

const fmtSeconds = (s: number): string => (s < 120 ? `${Math.max(0, Math.round(s))} s` : `${Math.round(s / 60)} min`);

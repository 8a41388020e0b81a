// The `comfyui` executor: runs the job's workflow on a ComfyUI server next to the agent (COMFYUI_URL), through
// ComfyUI's own HTTP + WebSocket API (server.py / execution.py / main.py of Comfy-Org/ComfyUI):
//
//   1. GET /system_stats — ComfyUI is up (else: the machine's failure, `infrastructure`: the job is handed back without
//      spending an attempt and the machine reports itself unhealthy; the same when the WebSocket cannot be opened).
//   2. The job's cached LoRAs are linked (symlinks, no copy) into COMFYUI_LORA_DIR/lora-router/<job>-e<epoch>/ as
//      user-<flat_file_id>.safetensors / shared-<filename>: a folder per run, so two users' LoRAs never share a name.
//      ComfyUI lists models/loras recursively and follows links (folder_paths: os.walk(followlinks=True)).
//   3. payload.workflow (API format) is copied with every `lora_name` input that names one of the job's LoRAs (its
//      flat_file_id or shared filename, with or without .safetensors, or "@<i>" for the i-th LoRA of the job's
//      requirements, so one workflow file serves any LoRA) replaced by that link's name.
//   4. WebSocket /ws?clientId=<id> first, then POST /prompt {prompt, client_id}. A 400 (validation) fails the job for
//      good with ComfyUI's own error text and node errors.
//   5. Messages for our prompt: execution_start / execution_cached / executing / executed → log lines; progress
//      {value, max} → job progress; execution_error → failed (retryable only for out-of-memory); execution_interrupted
//      → cancelled (or a retryable failure if we did not ask); execution_success → collect.
//   6. GET /history/{prompt_id}: every {filename, subfolder, type: "output"} of every node's output is fetched with
//      GET /view into the run's output folder as <node>-<filename>; the agent uploads them as job outputs.
//   7. Cancel: POST /interrupt {prompt_id} and POST /queue {delete: [prompt_id]} (it may still be queued).
//   8. The WebSocket closing mid-run (ComfyUI died or restarted) or no message for COMFYUI_STALL_SECONDS (hung) →
//      failed, retryable, with the reason; a closed WebSocket (and a POST /prompt that got no answer) also says
//      `backendLost`, so the machine reports itself unhealthy before the retry is placed. The link folder is removed and the prompt's history deleted afterwards.
import { randomUUID } from 'node:crypto';
import { createWriteStream, mkdirSync, rmSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import WebSocket from 'ws';
import type { Logger } from '../logger.js';
import { MAX_LINE_CHARS, type Execution, type ExecutionOutcome, type ExecutionSink, type Executor, type ExecutorJob, type ExecutorLora } from './types.js';

export interface ComfyUiExecutorOptions {
  /** ComfyUI's base URL, e.g. http://127.0.0.1:8188. */
  url: string;
  /** ComfyUI's models/loras folder (or a folder listed under `loras` in its extra_model_paths.yaml). */
  loraDir: string;
  /** No WebSocket message for this long while our prompt is queued or running → the attempt fails (retryable). */
  stallMs: number;
  /** After cancel: how long to wait for ComfyUI to confirm the interrupt. */
  cancelGraceMs: number;
  /** Timeout of each HTTP call to ComfyUI. */
  requestTimeoutMs?: number;
  log?: Logger;
}

export const LINK_ROOT = 'lora-router';
type Workflow = Record<string, { class_type?: string; inputs?: Record<string, unknown> }>;
type ImageRef = { filename: string; subfolder?: string; type?: string };

/** The file name a LoRA gets inside the run's link folder. */
export function linkNameFor(l: Pick<ExecutorLora, 'kind' | 'key'>): string {
  return l.kind === 'user' ? `user-${l.key}.safetensors` : `shared-${l.key}`;
}

/** Run folder (relative to COMFYUI_LORA_DIR) for one attempt. */
export const runLinkFolder = (job: Pick<ExecutorJob, 'jobId' | 'epoch'>): string => `${LINK_ROOT}/${job.jobId}-e${job.epoch}`;

/**
 * The workflow with the job's LoRA references rewritten to ComfyUI names (`<run folder>/<link name>`). Returns the
 * rewritten copy and what was replaced. Pure.
 */
export function rewriteLoraRefs(workflow: Workflow, job: Pick<ExecutorJob, 'jobId' | 'epoch' | 'loras'>): { workflow: Workflow; replaced: Record<string, string> } {
  const byRef = new Map<string, string>();
  for (const [i, l] of job.loras.entries()) {
    const target = `${runLinkFolder(job)}/${linkNameFor(l)}`;
    byRef.set(`@${i}`, target);
    byRef.set(l.key, target);
    if (!l.key.endsWith('.safetensors')) byRef.set(`${l.key}.safetensors`, target);
  }
  const replaced: Record<string, string> = {};
  const out: Workflow = {};
  for (const [id, node] of Object.entries(workflow)) {
    const inputs = { ...(node?.inputs ?? {}) };
    const ref = inputs.lora_name;
    if (typeof ref === 'string' && byRef.has(ref)) {
      inputs.lora_name = byRef.get(ref)!;
      replaced[id] = inputs.lora_name as string;
    }
    out[id] = { ...node, inputs };
  }
  return { workflow: out, replaced };
}

/** ComfyUI's 400 body → one readable reason: the error message and details, then each node's errors. */
export function describeRejection(body: unknown): string {
  const b = (body ?? {}) as { error?: unknown; node_errors?: Record<string, { class_type?: string; errors?: { message?: string; details?: string }[] }> };
  const e = b.error;
  const parts: string[] = [];
  if (typeof e === 'string') parts.push(e);
  else if (e && typeof e === 'object') {
    const { message, details } = e as { message?: string; details?: string };
    parts.push([message, details].filter(Boolean).join(': '));
  }
  for (const [id, ne] of Object.entries(b.node_errors ?? {})) {
    for (const err of ne.errors ?? []) parts.push(`node ${id} (${ne.class_type ?? '?'}): ${err.message ?? ''}${err.details ? `: ${err.details}` : ''}`);
  }
  return parts.filter(Boolean).join('; ') || JSON.stringify(body).slice(0, 500);
}

const safeFileName = (s: string): string => s.replace(/[^A-Za-z0-9._-]/g, '_').replace(/^\.+/, '_');

class ComfyRun {
  private ws: WebSocket | undefined;
  private promptId: string | undefined;
  private readonly clientId = randomUUID();
  private cancelReason: string | undefined;
  private settled = false;
  private resolveDone!: (o: ExecutionOutcome) => void;
  readonly done = new Promise<ExecutionOutcome>((r) => (this.resolveDone = r));
  private stallTimer: NodeJS.Timeout | undefined;
  private cancelTimer: NodeJS.Timeout | undefined;
  private readonly linkDir: string;
  private readonly nodeClass = new Map<string, string>();
  private total = 1;
  private finished = 0;
  private collecting = false;
  /** The /interrupt + /queue delete of a cancel, once sent. */
  private stopping: Promise<void> = Promise.resolve();

  constructor(
    private readonly opts: ComfyUiExecutorOptions,
    private readonly job: ExecutorJob,
    private readonly sink: ExecutionSink,
  ) {
    this.linkDir = join(opts.loraDir, ...runLinkFolder(job).split('/'));
  }

  private line(text: string): void {
    this.sink.log('stdout', `[comfyui] ${text}`.slice(0, MAX_LINE_CHARS));
  }

  private settle(o: ExecutionOutcome): void {
    if (this.settled) return;
    this.settled = true;
    clearTimeout(this.stallTimer);
    clearTimeout(this.cancelTimer);
    this.ws?.removeAllListeners();
    this.ws?.on('error', () => undefined);
    this.ws?.terminate();
    rmSync(this.linkDir, { recursive: true, force: true });
    if (this.promptId) void this.post('/history', { delete: [this.promptId] }).catch(() => undefined);
    this.resolveDone(o);
  }

  private fail(reason: string, retryable: boolean, cause?: { infrastructure: true } | { backendLost: true }): void {
    if (this.cancelReason !== undefined) return this.settle({ status: 'cancelled', reason: this.cancelReason, forced: false });
    this.settle({ status: 'failed', reason, retryable, ...cause });
  }

  private async request(path: string, init: RequestInit = {}): Promise<Response> {
    return fetch(new URL(path, this.opts.url), { ...init, signal: AbortSignal.timeout(this.opts.requestTimeoutMs ?? 30_000) });
  }

  private post(path: string, body: unknown): Promise<Response> {
    return this.request(path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  }

  async run(): Promise<void> {
    const workflow = this.job.payload.workflow;
    if (!workflow || typeof workflow !== 'object' || Array.isArray(workflow)) {
      return this.fail('payload.workflow must be a ComfyUI workflow in API format (an object of nodes: {"3": {"class_type": ..., "inputs": ...}})', false);
    }
    // 1. Is ComfyUI there?
    try {
      const res = await this.request('/system_stats');
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      const stats = (await res.json()) as { system?: { comfyui_version?: string }; devices?: { name?: string }[] };
      this.line(`ComfyUI ${stats.system?.comfyui_version ?? '?'} on ${stats.devices?.[0]?.name ?? 'unknown device'}`);
    } catch (err) {
      return this.fail(`ComfyUI is not reachable at ${this.opts.url} (/system_stats: ${(err as Error).message})`, true, { infrastructure: true });
    }
    if (this.cancelReason !== undefined) return this.fail('', true);

    // 2. + 3. LoRA links and the rewritten workflow.
    const { workflow: prompt, replaced } = rewriteLoraRefs(workflow as Workflow, this.job);
    try {
      rmSync(this.linkDir, { recursive: true, force: true });
      mkdirSync(this.linkDir, { recursive: true });
      for (const l of this.job.loras) symlinkSync(l.path, join(this.linkDir, linkNameFor(l)));
    } catch (err) {
      return this.fail(`cannot link the job's LoRAs into ${this.opts.loraDir}: ${(err as Error).message}`, true);
    }
    for (const [id, name] of Object.entries(replaced)) this.line(`node ${id}: lora_name → ${name}`);
    for (const [id, node] of Object.entries(prompt)) this.nodeClass.set(id, String(node.class_type ?? '?'));
    this.total = Math.max(1, this.nodeClass.size);

    // 4. WebSocket, then the prompt.
    try {
      await this.connect();
    } catch (err) {
      return this.fail(`ComfyUI WebSocket at ${this.opts.url} failed: ${(err as Error).message}`, true, { infrastructure: true });
    }
    if (this.cancelReason !== undefined) return this.fail('', true);
    let res: Response;
    try {
      res = await this.post('/prompt', { prompt, client_id: this.clientId });
    } catch (err) {
      return this.fail(`POST /prompt to ComfyUI failed: ${(err as Error).message}`, true, { backendLost: true });
    }
    const body = (await res.json().catch(() => undefined)) as { prompt_id?: string } | undefined;
    if (res.status === 400) return this.fail(`ComfyUI rejected the workflow: ${describeRejection(body)}`, false);
    if (!res.ok || !body?.prompt_id) return this.fail(`POST /prompt to ComfyUI answered HTTP ${res.status}`, true);
    this.promptId = body.prompt_id;
    this.line(`queued prompt ${this.promptId}`);
    if (this.cancelReason !== undefined) this.stopAfterCancel();
    this.armStall();
  }

  private connect(): Promise<void> {
    const wsUrl = new URL(`/ws?clientId=${encodeURIComponent(this.clientId)}`, this.opts.url);
    wsUrl.protocol = wsUrl.protocol === 'https:' ? 'wss:' : 'ws:';
    return new Promise<void>((resolve, reject) => {
      const ws = new WebSocket(wsUrl);
      this.ws = ws;
      const t = setTimeout(() => reject(new Error('no status message within 10 s')), 10_000);
      ws.on('message', (data, isBinary) => {
        if (isBinary) return; // preview images
        let msg: { type?: string; data?: Record<string, unknown> };
        try {
          msg = JSON.parse(data.toString()) as typeof msg;
        } catch {
          return;
        }
        if (msg.type === 'status') {
          clearTimeout(t);
          resolve();
        }
        this.onMessage(msg.type ?? '', msg.data ?? {});
      });
      ws.on('error', (err) => {
        clearTimeout(t);
        reject(err);
      });
      ws.on('close', (code) => {
        clearTimeout(t);
        reject(new Error(`closed (${code})`));
        if (!this.collecting) this.fail(`ComfyUI went away mid-run: its WebSocket closed (code ${code}); the prompt is lost with it`, true, { backendLost: true });
      });
    });
  }

  private armStall(): void {
    clearTimeout(this.stallTimer);
    this.stallTimer = setTimeout(() => void this.onStall(), this.opts.stallMs);
    this.stallTimer.unref();
  }

  private async onStall(): Promise<void> {
    if (this.settled || this.collecting) return;
    const secs = Math.round(this.opts.stallMs / 1000);
    let alive = true;
    try {
      alive = (await this.request('/system_stats')).ok;
    } catch {
      alive = false;
    }
    if (alive) await this.stopPrompt();
    this.fail(
      alive
        ? `ComfyUI made no progress on prompt ${this.promptId} for ${secs} s (COMFYUI_STALL_SECONDS); interrupted it`
        : `ComfyUI stopped answering at ${this.opts.url} (no message for ${secs} s and /system_stats fails)`,
      true,
    );
  }

  private onMessage(type: string, d: Record<string, unknown>): void {
    if (this.settled) return;
    if (this.promptId) this.armStall();
    if (d.prompt_id !== undefined && d.prompt_id !== this.promptId) return;
    switch (type) {
      case 'execution_start':
        this.line('execution started');
        break;
      case 'execution_cached': {
        const nodes = Array.isArray(d.nodes) ? d.nodes : [];
        this.finished += nodes.length;
        if (nodes.length) this.line(`cached nodes: ${nodes.join(', ')}`);
        break;
      }
      case 'executing':
        if (d.node === null || d.node === undefined) {
          void this.collect(); // the prompt is done (after execution_success, or an error already settled)
        } else {
          this.finished = Math.min(this.total, this.finished + (this.currentNode ? 1 : 0));
          this.currentNode = String(d.node);
          this.line(`executing node ${this.currentNode} (${this.nodeClass.get(this.currentNode) ?? '?'})`);
          this.sink.progress(Math.min(0.99, this.finished / this.total));
        }
        break;
      case 'progress': {
        const value = Number(d.value);
        const max = Number(d.max);
        if (max > 0) this.sink.progress(Math.min(0.99, (this.finished + value / max) / this.total), `node ${String(d.node)} step ${value}/${max}`);
        break;
      }
      case 'executed':
        this.line(`node ${String(d.node)} output: ${JSON.stringify(d.output).slice(0, 500)}`);
        break;
      case 'execution_error': {
        const text = `${String(d.exception_type ?? 'Exception')}: ${String(d.exception_message ?? '').trim()}`;
        this.line(`execution error in node ${String(d.node_id)} (${String(d.node_type)}): ${text}`);
        const oom = /OutOfMemory|out of memory|CUDA error/i.test(text);
        this.fail(`ComfyUI failed in node ${String(d.node_id)} (${String(d.node_type)}): ${text}`, oom);
        break;
      }
      case 'execution_interrupted':
        // Settle once both stop requests are answered, so the queue is clean before the slot takes the next job.
        if (this.cancelReason !== undefined) void this.stopping.then(() => this.settle({ status: 'cancelled', reason: this.cancelReason!, forced: false }));
        else this.fail(`ComfyUI interrupted prompt ${this.promptId} in node ${String(d.node_id)} (not asked by this agent)`, true);
        break;
      case 'execution_success':
        void this.collect();
        break;
    }
  }
  private currentNode: string | undefined;

  /** History → /view → the output folder. */
  private async collect(): Promise<void> {
    if (this.collecting || this.settled || !this.promptId) return;
    this.collecting = true;
    clearTimeout(this.stallTimer);
    try {
      const res = await this.request(`/history/${encodeURIComponent(this.promptId)}`);
      if (!res.ok) throw new Error(`/history answered HTTP ${res.status}`);
      const all = (await res.json()) as Record<string, { outputs?: Record<string, Record<string, unknown>>; status?: { status_str?: string; completed?: boolean } }>;
      const entry = all[this.promptId];
      if (!entry) throw new Error(`prompt ${this.promptId} is not in ComfyUI's history`);
      if (entry.status && entry.status.status_str !== 'success') {
        this.collecting = false;
        return this.fail(`ComfyUI finished prompt ${this.promptId} with status ${entry.status.status_str}`, true);
      }
      const files: string[] = [];
      for (const [nodeId, output] of Object.entries(entry.outputs ?? {})) {
        for (const value of Object.values(output ?? {})) {
          if (!Array.isArray(value)) continue;
          for (const ref of value as ImageRef[]) {
            if (!ref || typeof ref.filename !== 'string' || (ref.type ?? 'output') !== 'output') continue;
            const q = new URLSearchParams({ filename: ref.filename, subfolder: ref.subfolder ?? '', type: 'output' });
            const img = await this.request(`/view?${q.toString()}`);
            if (!img.ok || !img.body) throw new Error(`/view ${ref.filename} answered HTTP ${img.status}`);
            const name = safeFileName(`${nodeId}-${ref.subfolder ? `${ref.subfolder}_` : ''}${ref.filename}`);
            await pipeline(Readable.fromWeb(img.body as import('node:stream/web').ReadableStream), createWriteStream(join(this.job.outputDir, name)));
            files.push(name);
          }
        }
      }
      this.line(`collected ${files.length} file(s): ${files.join(', ')}`);
      this.sink.progress(1, 'done');
      this.settle({ status: 'succeeded', result: { prompt_id: this.promptId, files } });
    } catch (err) {
      this.settle({ status: 'failed', retryable: true, reason: `could not collect ComfyUI's outputs: ${(err as Error).message}` });
    }
  }

  /** /interrupt (our prompt only, if it is the one running) and /queue delete (if it is still waiting). */
  private async stopPrompt(): Promise<void> {
    if (!this.promptId) return;
    const results = await Promise.allSettled([this.post('/interrupt', { prompt_id: this.promptId }), this.post('/queue', { delete: [this.promptId] })]);
    for (const r of results) if (r.status === 'rejected') this.opts.log?.warn({ err: String(r.reason) }, 'comfyui: stop request failed');
  }

  /** Before the prompt is queued, run() sees the reason at its next step and stops there. */
  cancel(reason: string): void {
    if (this.settled || this.cancelReason !== undefined) return;
    this.cancelReason = reason;
    this.line(`cancelling: ${reason}`);
    if (this.promptId) this.stopAfterCancel();
  }

  private stopAfterCancel(): void {
    this.stopping = this.stopPrompt();
    // A prompt deleted from the queue before it ran sends nothing: stop waiting after the grace period.
    this.cancelTimer = setTimeout(() => this.settle({ status: 'cancelled', reason: this.cancelReason ?? 'cancelled', forced: true }), this.opts.cancelGraceMs);
  }

  /** A bug in this file must still end the run (retryable: nothing says the job is at fault). */
  crashed(err: unknown): void {
    this.fail(`comfyui executor error: ${(err as Error)?.message ?? String(err)}`, true);
  }
}

export class ComfyUiExecutor implements Executor {
  readonly kind = 'comfyui';
  constructor(private readonly opts: ComfyUiExecutorOptions) {}

  start(job: ExecutorJob, sink: ExecutionSink): Execution {
    mkdirSync(job.outputDir, { recursive: true });
    const run = new ComfyRun(this.opts, job, sink);
    run.run().catch((err: unknown) => {
      this.opts.log?.error({ err: (err as Error)?.stack ?? String(err) }, 'comfyui executor: unexpected error');
      run.crashed(err);
    });
    return { done: run.done, cancel: (reason) => run.cancel(reason) };
  }
}

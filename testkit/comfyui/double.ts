// A TEST DOUBLE of ComfyUI's HTTP + WebSocket protocol — not ComfyUI. Real ComfyUI needs PyTorch and a GPU; this
// server speaks the same endpoints and messages so the agent's ComfyUI executor can be tested and demonstrated here.
// Every route, body and message shape below is taken from ComfyUI's source (Comfy-Org/ComfyUI at a125cd8, Oct 2025):
//
//   server.py     GET /system_stats, GET /ws?clientId= (first message `status` {status:{exec_info:{queue_remaining}},
//                 sid}), POST /prompt ({prompt, client_id, prompt_id?} → {prompt_id, number, node_errors}; invalid →
//                 400 {error:{type,message,details,extra_info}, node_errors}), GET /history/{prompt_id}, GET /view
//                 (?filename&subfolder&type, 400 on '/' or '..', 404 when absent), POST /interrupt ({prompt_id?}: only
//                 that prompt when it is running, else global), POST /queue ({delete:[ids]} | {clear:true}),
//                 GET /queue, POST /history ({delete:[ids]} | {clear:true}); JSON messages are {type, data}.
//   execution.py  execution_start {prompt_id, timestamp}, execution_cached {nodes, prompt_id, timestamp}, executing
//                 {node, display_node, prompt_id}, executed {node, display_node, output, prompt_id},
//                 execution_error {prompt_id, node_id, node_type, executed, exception_message, exception_type,
//                 traceback, current_inputs, current_outputs, timestamp}, execution_interrupted {prompt_id, node_id,
//                 node_type, executed, timestamp}, execution_success {prompt_id, timestamp}; validate_prompt's error
//                 types (invalid_prompt, prompt_no_outputs, prompt_outputs_failed_validation with node_errors
//                 {id: {errors, dependent_outputs, class_type}}, value_not_in_list, required_input_missing);
//                 history entries {prompt, outputs, status:{status_str, completed, messages}, meta}.
//   main.py       progress {value, max, prompt_id, node}; executing {node: null, prompt_id} once a prompt is done.
//   nodes.py      LoraLoader / LoraLoaderModelOnly (`lora_name` must be a file under models/loras, links followed as
//                 folder_paths walks with followlinks=True), SaveImage ({ui: {images: [{filename, subfolder, type}]}},
//                 files named `<prefix>_<counter:05>_.png`), EmptyLatentImage, KSampler, CLIPTextEncode, VAEDecode,
//                 CheckpointLoaderSimple.
//
// What it does instead of diffusion: LoRA loaders really open their file and read its safetensors header; KSampler
// sleeps `stepMs` per step and reports progress; SaveImage renders a real PNG per batch item whose size comes from
// EmptyLatentImage and whose colours come from the seed, the prompt text and the LoRA bytes. Test-only extras live
// under /testkit/ (a journal of the requests it received; freeze, to play a hung ComfyUI).
import { randomUUID } from 'node:crypto';
import { createReadStream, existsSync, mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join, relative, resolve, sep } from 'node:path';
import { WebSocketServer, type WebSocket } from 'ws';
import { renderPng } from './render.js';

export interface ComfyDoubleOptions {
  /** ComfyUI's base folder: models/loras, models/checkpoints and output/ live below it. */
  baseDir: string;
  host?: string;
  port?: number;
  /** Time per sampler step. */
  stepMs?: number;
}

type Workflow = Record<string, { class_type?: string; inputs?: Record<string, unknown>; _meta?: unknown }>;
interface QueueItem {
  number: number;
  promptId: string;
  prompt: Workflow;
  extraData: Record<string, unknown>;
  outputs: string[];
}
interface NodeSpec {
  required: string[];
  output?: boolean;
}

const NODES: Record<string, NodeSpec> = {
  CheckpointLoaderSimple: { required: ['ckpt_name'] },
  LoraLoader: { required: ['model', 'clip', 'lora_name', 'strength_model', 'strength_clip'] },
  LoraLoaderModelOnly: { required: ['model', 'lora_name', 'strength_model'] },
  CLIPTextEncode: { required: ['text', 'clip'] },
  EmptyLatentImage: { required: ['width', 'height', 'batch_size'] },
  KSampler: { required: ['model', 'seed', 'steps', 'cfg', 'sampler_name', 'scheduler', 'positive', 'negative', 'latent_image', 'denoise'] },
  VAEDecode: { required: ['samples', 'vae'] },
  SaveImage: { required: ['images', 'filename_prefix'], output: true },
};

export interface JournalEntry {
  at: number;
  method: string;
  path: string;
  body?: unknown;
}

class Interrupted extends Error {}

export class ComfyDouble {
  readonly journal: JournalEntry[] = [];
  private server!: Server;
  private wss!: WebSocketServer;
  private readonly sockets = new Map<string, WebSocket>();
  private queue: QueueItem[] = [];
  private running: QueueItem | undefined;
  private readonly history = new Map<string, unknown>();
  private number = 0;
  private clientId: string | null = null;
  private interruptFlag = false;
  private frozen = false;
  private counter = new Map<string, number>();
  private wake: (() => void) | undefined;
  private closed = false;
  readonly lorasDir: string;
  readonly outputDir: string;
  url = '';

  constructor(private readonly opts: ComfyDoubleOptions) {
    this.lorasDir = join(opts.baseDir, 'models', 'loras');
    this.outputDir = join(opts.baseDir, 'output');
    mkdirSync(this.lorasDir, { recursive: true });
    mkdirSync(join(opts.baseDir, 'models', 'checkpoints'), { recursive: true });
    mkdirSync(this.outputDir, { recursive: true });
  }

  async start(): Promise<string> {
    this.server = createServer((req, res) => {
      this.handle(req, res).catch((err: unknown) => {
        if (!res.headersSent) this.json(res, 500, { error: String((err as Error)?.message ?? err) });
        else res.destroy();
      });
    });
    this.wss = new WebSocketServer({ noServer: true });
    this.server.on('upgrade', (req, socket, head) => {
      const url = new URL(req.url ?? '/', 'http://x');
      if (url.pathname !== '/ws') return socket.destroy();
      this.wss.handleUpgrade(req, socket, head, (ws) => this.onSocket(ws, url.searchParams.get('clientId') ?? ''));
    });
    await new Promise<void>((r) => this.server.listen(this.opts.port ?? 0, this.opts.host ?? '127.0.0.1', r));
    const { port } = this.server.address() as AddressInfo;
    this.url = `http://${this.opts.host ?? '127.0.0.1'}:${port}`;
    void this.worker();
    return this.url;
  }

  async stop(): Promise<void> {
    this.closed = true;
    this.wake?.();
    for (const ws of this.sockets.values()) ws.terminate();
    this.wss?.close();
    this.server?.closeAllConnections();
    await new Promise<void>((r) => this.server?.close(() => r()) ?? r());
  }

  /** The LoRA names ComfyUI would offer for `lora_name`: files under models/loras, links followed. */
  loraNames(): string[] {
    const out: string[] = [];
    const walk = (dir: string) => {
      let entries: string[];
      try {
        entries = readdirSync(dir);
      } catch {
        return;
      }
      for (const e of entries) {
        const p = join(dir, e);
        let st;
        try {
          st = statSync(p); // follows links, like os.walk(followlinks=True) + isfile
        } catch {
          continue;
        }
        if (st.isDirectory()) walk(p);
        else if (/\.(safetensors|ckpt|pt|pth|bin|pkl|sft)$/.test(e)) out.push(relative(this.lorasDir, p).split(sep).join('/'));
      }
    };
    walk(this.lorasDir);
    return out.sort();
  }

  private onSocket(ws: WebSocket, requested: string): void {
    const sid = requested || randomUUID().replace(/-/g, '');
    this.sockets.get(sid)?.terminate();
    this.sockets.set(sid, ws);
    ws.on('close', () => {
      if (this.sockets.get(sid) === ws) this.sockets.delete(sid);
    });
    ws.send(JSON.stringify({ type: 'status', data: { status: this.queueInfo(), sid } }));
  }

  private queueInfo() {
    return { exec_info: { queue_remaining: this.queue.length + (this.running ? 1 : 0) } };
  }

  /** server.send_json: to one client id when given (and connected), to every socket when null. */
  private send(type: string, data: unknown, sid: string | null): void {
    const msg = JSON.stringify({ type, data });
    if (sid === null) for (const ws of this.sockets.values()) ws.send(msg);
    else this.sockets.get(sid)?.send(msg);
  }

  private json(res: ServerResponse, status: number, body: unknown): void {
    const text = JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  }

  private async body(req: IncomingMessage): Promise<unknown> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const text = Buffer.concat(chunks).toString('utf8');
    if (!text) return {};
    try {
      return JSON.parse(text);
    } catch {
      return undefined;
    }
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://x');
    const method = req.method ?? 'GET';
    const body = method === 'POST' ? await this.body(req) : undefined;
    if (!url.pathname.startsWith('/testkit/')) this.journal.push({ at: Date.now(), method, path: url.pathname + url.search, body });
    const b = (body ?? {}) as Record<string, unknown>;
    const route = `${method} ${url.pathname}`;

    if (route === 'GET /system_stats') return this.json(res, 200, systemStats());
    if (route === 'GET /prompt') return this.json(res, 200, this.queueInfo());
    if (route === 'GET /queue') {
      const row = (q: QueueItem) => [q.number, q.promptId, q.prompt, q.extraData, q.outputs];
      return this.json(res, 200, { queue_running: this.running ? [row(this.running)] : [], queue_pending: this.queue.map(row) });
    }
    if (route === 'POST /prompt') {
      if (body === undefined) return this.json(res, 400, { error: 'invalid JSON' }); // aiohttp would raise; 400 here
      return this.postPrompt(res, b);
    }
    if (route === 'POST /queue') {
      if (b.clear) this.queue = [];
      if (Array.isArray(b.delete)) this.queue = this.queue.filter((q) => !(b.delete as unknown[]).includes(q.promptId));
      this.send('status', { status: this.queueInfo() }, null);
      res.writeHead(200).end();
      return;
    }
    if (route === 'POST /interrupt') {
      const target = typeof b.prompt_id === 'string' ? b.prompt_id : undefined;
      if (!target || this.running?.promptId === target) this.interruptFlag = true;
      res.writeHead(200).end();
      return;
    }
    if (route === 'POST /history') {
      if (b.clear) this.history.clear();
      if (Array.isArray(b.delete)) for (const id of b.delete) this.history.delete(String(id));
      res.writeHead(200).end();
      return;
    }
    const hist = /^\/history\/([^/]+)$/.exec(url.pathname);
    if (method === 'GET' && hist) {
      const id = decodeURIComponent(hist[1]!);
      const h = this.history.get(id);
      return this.json(res, 200, h ? { [id]: h } : {});
    }
    if (method === 'GET' && url.pathname === '/history') return this.json(res, 200, Object.fromEntries(this.history));
    if (route === 'GET /view') return this.view(url, res);
    if (route === 'GET /testkit/journal') return this.json(res, 200, { journal: this.journal });
    if (route === 'POST /testkit/freeze') {
      this.frozen = b.frozen !== false;
      return this.json(res, 200, { frozen: this.frozen });
    }
    res.writeHead(404).end();
  }

  private view(url: URL, res: ServerResponse): void {
    const filename = url.searchParams.get('filename');
    if (filename === null) return void res.writeHead(404).end();
    if (!filename || filename.startsWith('/') || filename.includes('..')) return void res.writeHead(400).end();
    const type = url.searchParams.get('type') ?? 'output';
    if (type !== 'output') return void res.writeHead(400).end(); // only output/ exists in the double
    let dir = this.outputDir;
    const subfolder = url.searchParams.get('subfolder');
    if (subfolder) {
      dir = resolve(this.outputDir, subfolder);
      if (dir !== this.outputDir && !dir.startsWith(this.outputDir + sep)) return void res.writeHead(403).end();
    }
    const file = join(dir, filename.split('/').pop()!);
    if (!existsSync(file) || !statSync(file).isFile()) return void res.writeHead(404).end();
    res.writeHead(200, {
      'content-type': file.endsWith('.png') ? 'image/png' : 'application/octet-stream',
      'content-length': statSync(file).size,
      'content-disposition': `filename="${filename}"`,
    });
    createReadStream(file).pipe(res);
  }

  private postPrompt(res: ServerResponse, b: Record<string, unknown>): void {
    const number = typeof b.number === 'number' ? b.number : b.front ? -this.number : this.number;
    if (typeof b.number !== 'number') this.number++;
    if (!('prompt' in b)) {
      return this.json(res, 400, {
        error: { type: 'no_prompt', message: 'No prompt provided', details: 'No prompt provided', extra_info: {} },
        node_errors: {},
      });
    }
    const prompt = b.prompt as Workflow;
    const promptId = String(b.prompt_id ?? randomUUID());
    const valid = this.validate(prompt);
    if (!valid.ok) return this.json(res, 400, { error: valid.error, node_errors: valid.nodeErrors });
    const extraData = { ...((b.extra_data as Record<string, unknown>) ?? {}) };
    if ('client_id' in b) extraData.client_id = b.client_id;
    this.queue.push({ number, promptId, prompt, extraData, outputs: valid.outputs });
    this.queue.sort((x, y) => x.number - y.number);
    this.send('status', { status: this.queueInfo() }, null);
    this.wake?.();
    this.json(res, 200, { prompt_id: promptId, number, node_errors: {} });
  }

  private validate(prompt: Workflow):
    | { ok: true; outputs: string[] }
    | { ok: false; error: Record<string, unknown>; nodeErrors: Record<string, unknown> } {
    const invalid = (message: string, details: string) => ({
      ok: false as const,
      error: { type: 'invalid_prompt', message, details, extra_info: {} },
      nodeErrors: {},
    });
    if (!prompt || typeof prompt !== 'object' || Array.isArray(prompt)) return invalid('Cannot execute because the prompt is not an object.', '');
    const outputs: string[] = [];
    for (const [id, node] of Object.entries(prompt)) {
      if (!node || typeof node !== 'object' || !node.class_type) return invalid('Cannot execute because a node is missing the class_type property.', `Node ID '#${id}'`);
      const spec = NODES[node.class_type];
      if (!spec) return invalid(`Cannot execute because node ${node.class_type} does not exist.`, `Node ID '#${id}'`);
      if (spec.output) outputs.push(id);
    }
    if (outputs.length === 0) return { ok: false, error: { type: 'prompt_no_outputs', message: 'Prompt has no outputs', details: '', extra_info: {} }, nodeErrors: {} };

    const nodeErrors: Record<string, { errors: unknown[]; dependent_outputs: string[]; class_type: string }> = {};
    const loras = this.loraNames();
    const reasonsFor = (id: string, node: Workflow[string]): Record<string, unknown>[] => {
      const reasons: Record<string, unknown>[] = [];
      const inputs = node.inputs ?? {};
      for (const name of NODES[node.class_type!]!.required) {
        if (!(name in inputs)) {
          reasons.push({ type: 'required_input_missing', message: 'Required input is missing', details: name, extra_info: { input_name: name } });
          continue;
        }
        const v = inputs[name];
        if (Array.isArray(v) && v.length === 2 && !(String(v[0]) in prompt)) {
          reasons.push({ type: 'bad_linked_input', message: 'Bad linked input, must be a length-2 list of [string, int]', details: `${name}, ${JSON.stringify(v)}`, extra_info: { input_name: name, received_value: v } });
        }
      }
      if ((node.class_type === 'LoraLoader' || node.class_type === 'LoraLoaderModelOnly') && typeof inputs.lora_name === 'string' && !loras.includes(inputs.lora_name)) {
        const listInfo = loras.length > 20 ? `(list of length ${loras.length})` : `[${loras.map((l) => `'${l}'`).join(', ')}]`;
        reasons.push({
          type: 'value_not_in_list',
          message: 'Value not in list',
          details: `lora_name: '${inputs.lora_name}' not in ${listInfo}`,
          extra_info: { input_name: 'lora_name', input_config: null, received_value: inputs.lora_name },
        });
      }
      void id;
      return reasons;
    };
    const good: string[] = [];
    const lines: string[] = [];
    for (const o of outputs) {
      const upstream = ancestors(prompt, o);
      let ok = true;
      for (const id of upstream) {
        const reasons = reasonsFor(id, prompt[id]!);
        if (reasons.length === 0) continue;
        ok = false;
        nodeErrors[id] ??= { errors: reasons, dependent_outputs: [], class_type: prompt[id]!.class_type! };
        nodeErrors[id].dependent_outputs.push(o);
        for (const r of reasons) lines.push(`${r.message}: ${r.details}`);
      }
      if (ok) good.push(o);
    }
    if (good.length === 0) {
      return {
        ok: false,
        error: { type: 'prompt_outputs_failed_validation', message: 'Prompt outputs failed validation', details: [...new Set(lines)].join('\n'), extra_info: {} },
        nodeErrors,
      };
    }
    return { ok: true, outputs: good };
  }

  private async worker(): Promise<void> {
    while (!this.closed) {
      const item = this.queue.shift();
      if (!item) {
        await new Promise<void>((r) => (this.wake = r));
        this.wake = undefined;
        continue;
      }
      this.running = item;
      this.send('status', { status: this.queueInfo() }, null);
      await this.execute(item);
      this.running = undefined;
      this.send('status', { status: this.queueInfo() }, null);
    }
  }

  private async execute(item: QueueItem): Promise<void> {
    const { promptId, prompt } = item;
    this.clientId = typeof item.extraData.client_id === 'string' ? item.extraData.client_id : null;
    this.interruptFlag = false;
    const messages: [string, unknown][] = [];
    const add = (event: string, data: Record<string, unknown>, broadcast: boolean) => {
      const d = { ...data, timestamp: Date.now() };
      messages.push([event, d]);
      if (this.clientId !== null || broadcast) this.send(event, d, this.clientId);
    };
    add('execution_start', { prompt_id: promptId }, false);
    add('execution_cached', { nodes: [], prompt_id: promptId }, false);
    const executed: string[] = [];
    const values = new Map<string, Record<string, unknown>>();
    const uiOutputs: Record<string, unknown> = {};
    const meta: Record<string, unknown> = {};
    let success = true;
    for (const id of topoOrder(prompt, item.outputs)) {
      const node = prompt[id]!;
      this.send('executing', { node: id, display_node: id, prompt_id: promptId }, this.clientId);
      try {
        const result = await this.runNode(id, node, values, promptId);
        values.set(id, result.value);
        if (result.ui) {
          uiOutputs[id] = result.ui;
          meta[id] = { node_id: id, display_node: id, parent_node: null, real_node_id: id };
          this.send('executed', { node: id, display_node: id, output: result.ui, prompt_id: promptId }, this.clientId);
        }
        executed.push(id);
      } catch (err) {
        success = false;
        if (err instanceof Interrupted) {
          add('execution_interrupted', { prompt_id: promptId, node_id: id, node_type: node.class_type, executed: [...executed] }, true);
        } else {
          add(
            'execution_error',
            {
              prompt_id: promptId,
              node_id: id,
              node_type: node.class_type,
              executed: [...executed],
              exception_message: (err as Error).message,
              exception_type: (err as Error).name === 'Error' ? 'Exception' : (err as Error).name,
              traceback: [String((err as Error).stack ?? '')],
              current_inputs: {},
              current_outputs: [...values.keys()],
            },
            false,
          );
        }
        break;
      }
    }
    if (success) add('execution_success', { prompt_id: promptId }, false);
    this.history.set(promptId, {
      prompt: [item.number, promptId, prompt, item.extraData, item.outputs],
      outputs: uiOutputs,
      status: { status_str: success ? 'success' : 'error', completed: success, messages },
      meta,
    });
    if (this.clientId !== null) this.send('executing', { node: null, prompt_id: promptId }, this.clientId);
  }

  /** Waits while frozen (a hung ComfyUI sends nothing), then throws if interrupted. */
  private async checkpoint(ms: number): Promise<void> {
    await sleep(ms);
    while (this.frozen && !this.closed) await sleep(50);
    if (this.interruptFlag) {
      this.interruptFlag = false;
      throw new Interrupted('Processing interrupted');
    }
  }

  private async runNode(id: string, node: Workflow[string], values: Map<string, Record<string, unknown>>, promptId: string): Promise<{ value: Record<string, unknown>; ui?: unknown }> {
    const inputs = node.inputs ?? {};
    const input = (name: string): unknown => {
      const v = inputs[name];
      if (Array.isArray(v) && v.length === 2 && typeof v[0] === 'string') return values.get(v[0])?.[`out${v[1]}`];
      return v;
    };
    await this.checkpoint(5);
    switch (node.class_type) {
      case 'CheckpointLoaderSimple':
        return { value: { out0: { ckpt: inputs.ckpt_name, loras: [] }, out1: { clip: true }, out2: { vae: true } } };
      case 'LoraLoader':
      case 'LoraLoaderModelOnly': {
        const name = String(inputs.lora_name);
        const opened = await openLora(join(this.lorasDir, ...name.split('/')));
        const model = input('model') as { loras?: unknown[] } | undefined;
        return { value: { out0: { ...model, loras: [...(model?.loras ?? []), { name, ...opened, strength: Number(inputs.strength_model) }] }, out1: input('clip') } };
      }
      case 'CLIPTextEncode':
        return { value: { out0: { text: String(input('text') ?? '') } } };
      case 'EmptyLatentImage':
        return { value: { out0: { width: int(inputs.width, 512), height: int(inputs.height, 512), batch: int(inputs.batch_size, 1) } } };
      case 'KSampler': {
        const steps = int(inputs.steps, 20);
        for (let step = 1; step <= steps; step++) {
          await this.checkpoint(this.opts.stepMs ?? 50);
          this.send('progress', { value: step, max: steps, prompt_id: promptId, node: id }, this.clientId);
        }
        return {
          value: {
            out0: {
              latent: input('latent_image'),
              model: input('model'),
              seed: Number(inputs.seed ?? 0),
              positive: (input('positive') as { text?: string } | undefined)?.text ?? '',
            },
          },
        };
      }
      case 'VAEDecode':
        return { value: { out0: input('samples') } };
      case 'SaveImage': {
        const img = input('images') as { latent?: { width: number; height: number; batch: number }; seed?: number; positive?: string; model?: { loras?: { digest: string }[] } } | undefined;
        const prefix = String(inputs.filename_prefix ?? 'ComfyUI');
        const images = [];
        const latent = img?.latent ?? { width: 64, height: 64, batch: 1 };
        for (let i = 0; i < latent.batch; i++) {
          const counter = (this.counter.get(prefix) ?? 0) + 1;
          this.counter.set(prefix, counter);
          const filename = `${prefix.replace(/[^A-Za-z0-9._-]/g, '_')}_${String(counter).padStart(5, '0')}_.png`;
          const png = renderPng(latent.width, latent.height, [String(img?.seed ?? 0), String(i), img?.positive ?? '', ...(img?.model?.loras ?? []).map((l) => l.digest)]);
          writeFileSync(join(this.outputDir, filename), png);
          images.push({ filename, subfolder: '', type: 'output' });
        }
        return { value: {}, ui: { images } };
      }
    }
    throw new Error(`node ${node.class_type} is not implemented by the double`);
  }
}

function int(v: unknown, fallback: number): number {
  const n = Number(v);
  return Number.isFinite(n) && n > 0 ? Math.trunc(n) : fallback;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Opens a LoRA like comfy.utils.load_torch_file would start to: the safetensors header must parse. */
async function openLora(path: string): Promise<{ tensors: number; digest: string }> {
  const fh = await open(path, 'r'); // ENOENT here is what a LoRA link that vanished mid-run looks like
  try {
    const head = Buffer.alloc(8);
    await fh.read(head, 0, 8, 0);
    const n = Number(head.readBigUInt64LE(0));
    if (n <= 0 || n > 100 * 1024 * 1024) throw new Error(`Error while deserializing header: HeaderTooLarge (${path})`);
    const json = Buffer.alloc(n);
    await fh.read(json, 0, n, 8);
    const header = JSON.parse(json.toString('utf8')) as Record<string, unknown>;
    const tensors = Object.keys(header).filter((k) => k !== '__metadata__').length;
    const { createHash } = await import('node:crypto');
    return { tensors, digest: createHash('sha256').update(json).digest('hex') };
  } finally {
    await fh.close();
  }
}

/** Nodes `output` depends on (itself included). */
function ancestors(prompt: Workflow, output: string): string[] {
  const seen = new Set<string>();
  const visit = (id: string) => {
    if (seen.has(id) || !prompt[id]) return;
    seen.add(id);
    for (const v of Object.values(prompt[id]!.inputs ?? {})) if (Array.isArray(v) && v.length === 2 && typeof v[0] === 'string') visit(v[0]);
  };
  visit(output);
  return [...seen];
}

/** Dependencies before dependants, only what the outputs need (ExecutionList does the same lazily). */
function topoOrder(prompt: Workflow, outputs: string[]): string[] {
  const order: string[] = [];
  const done = new Set<string>();
  const visit = (id: string) => {
    if (done.has(id) || !prompt[id]) return;
    done.add(id);
    for (const v of Object.values(prompt[id]!.inputs ?? {})) if (Array.isArray(v) && v.length === 2 && typeof v[0] === 'string') visit(v[0]);
    order.push(id);
  };
  for (const o of outputs) visit(o);
  return order;
}

function systemStats() {
  return {
    system: {
      os: 'posix',
      ram_total: 0,
      ram_free: 0,
      comfyui_version: 'testkit-double',
      required_frontend_version: null,
      installed_templates_version: null,
      required_templates_version: null,
      python_version: 'none (lora-router testkit ComfyUI protocol double)',
      pytorch_version: 'none',
      embedded_python: false,
      argv: ['testkit/comfyui'],
    },
    devices: [{ name: 'testkit double (no GPU)', type: 'cpu', index: null, vram_total: 0, vram_free: 0, torch_vram_total: 0, torch_vram_free: 0 }],
  };
}

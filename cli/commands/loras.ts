// `lora-router upload <file> | loras | rm <id>`: the user's (and, with --shared, the admin's) side of the LoRA library.
// upload picks the flow by size: ≤ 100 MB goes multipart through the API (one request, validated before it answers);
// larger files get an upload session and go straight to Blob Storage in 8 MiB blocks through the SAS URL, then the
// command waits until the BlobCreated trigger has validated the file.
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { basename } from 'node:path';
import { randomBytes } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { BlockBlobClient } from '@azure/storage-blob';
import { SingleBar, Presets } from 'cli-progress';
import type { Command } from 'commander';
import {
  MAX_DIRECT_UPLOAD_BYTES,
  type CreateSharedUploadResponse,
  type CreateUploadResponse,
  type DirectUploadResponse,
  type SharedDirectUploadResponse,
  type SharedLora,
  type UserLora,
  type UserLoraList,
} from '../../contract/loras.js';
import { allUserLoras } from '../../contract/loras-paging.js';
import { ApiRequestError, type ApiClient } from '../../api-client/index.js';
import type { CliContext } from '../index.js';

export interface UploadOptions {
  shared?: boolean;
  /** Shared LoRAs: the filename to register (default: the file's base name). */
  name?: string;
  /** Force a flow instead of choosing by size. */
  flow?: 'multipart' | 'sas';
  /** Bytes sent so far. */
  onProgress?(sent: number, total: number): void;
  /** Called once the bytes are stored and validation is awaited (SAS flow). */
  onValidating?(): void;
  /** Wait for the verdict (SAS flow). Default true. */
  wait?: boolean;
  waitTimeoutMs?: number;
  blockBytes?: number;
  concurrency?: number;
}

export interface UploadOutcome {
  flow: 'multipart' | 'sas';
  /** flat_file_id (user) or filename (shared). */
  id: string;
  status: UserLora['status'];
  sha256: string | null;
  size_bytes: number;
  reject_reason: string | null;
}

class Counter extends Transform {
  sent = 0;
  constructor(private readonly tick: (n: number) => void) {
    super();
  }
  override _transform(chunk: Buffer, _e: BufferEncoding, cb: TransformCallback): void {
    this.sent += chunk.length;
    this.tick(this.sent);
    cb(null, chunk);
  }
}

/** Streams the file as multipart/form-data with an exact Content-Length (no chunked encoding, no buffering). */
async function postMultipart(api: ApiClient, path: string, file: string, size: number, partName: string, onProgress?: (n: number) => void): Promise<unknown> {
  const boundary = `----lora-router-${randomBytes(12).toString('hex')}`;
  const safeName = partName.replace(/["\r\n\\]/g, '_');
  const head = Buffer.from(
    `--${boundary}\r\nContent-Disposition: form-data; name="size_bytes"\r\n\r\n${size}\r\n` +
      `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="${safeName}"\r\nContent-Type: application/octet-stream\r\n\r\n`,
  );
  const tail = Buffer.from(`\r\n--${boundary}--\r\n`);
  const url = new URL(api.url(path));
  const headers: Record<string, string | number> = {
    'content-type': `multipart/form-data; boundary=${boundary}`,
    'content-length': head.length + size + tail.length,
  };
  if (api.options.token) headers.authorization = `Bearer ${api.options.token}`;
  const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
  const res = await new Promise<IncomingMessage>((resolve, reject) => {
    // The server may answer (e.g. 413, 429) before it has read everything, then close: that answer wins over the
    // write error it causes, so a send error only counts if no answer follows shortly.
    const failLater = (err: Error) => setTimeout(() => reject(err), 2000).unref();
    const req = send(url, { method: 'POST', headers }, resolve);
    req.on('error', failLater);
    req.write(head);
    const counter = new Counter((n) => onProgress?.(n));
    pipeline(createReadStream(file, { highWaterMark: 1024 * 1024 }), counter, async function* (source) {
      for await (const chunk of source) yield chunk;
      yield tail;
    }, req).catch(failLater);
  });
  let text = '';
  for await (const chunk of res) text += chunk.toString();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    /* keep text */
  }
  const status = res.statusCode ?? 0;
  if (status < 200 || status >= 300) {
    const err = (body as { error?: { code?: string; message?: string } }).error;
    throw new ApiRequestError(status, err?.code ?? 'http_error', err?.message ?? `HTTP ${status}`, body);
  }
  return body;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Uploads one file by the flow its size calls for; resolves with the verdict (or `uploading` with wait: false). */
export async function uploadLora(api: ApiClient, file: string, opts: UploadOptions = {}): Promise<UploadOutcome> {
  const { size } = await stat(file);
  if (size === 0) throw new Error(`${file} is empty`);
  const flow = opts.flow ?? (size <= MAX_DIRECT_UPLOAD_BYTES ? 'multipart' : 'sas');
  const name = opts.name ?? basename(file);
  const progress = (n: number) => opts.onProgress?.(Math.min(n, size), size);

  if (flow === 'multipart') {
    if (opts.shared) {
      const r = (await postMultipart(api, 'shared-loras/upload', file, size, name, progress)) as SharedDirectUploadResponse;
      return { flow, id: r.filename, status: r.status, sha256: r.sha256, size_bytes: r.size_bytes, reject_reason: r.reject_reason };
    }
    const r = (await postMultipart(api, 'user-loras/upload', file, size, name, progress)) as DirectUploadResponse;
    return { flow, id: r.flat_file_id, status: r.status, sha256: r.sha256, size_bytes: r.size_bytes, reject_reason: r.reject_reason };
  }

  let id: string;
  let uploadUrl: string;
  let statusPath: string;
  if (opts.shared) {
    const s = await api.post<CreateSharedUploadResponse>('shared-loras', { filename: name, size_bytes: size });
    id = s.filename;
    uploadUrl = s.upload_url;
    statusPath = `shared-loras/${encodeURIComponent(s.filename)}`;
  } else {
    const s = await api.post<CreateUploadResponse>('user-loras', { original_name: name, size_bytes: size });
    id = s.flat_file_id;
    uploadUrl = s.upload_url;
    statusPath = `user-loras/${s.flat_file_id}`;
  }
  await new BlockBlobClient(uploadUrl).uploadFile(file, {
    blockSize: opts.blockBytes ?? 8 * 1024 * 1024,
    concurrency: opts.concurrency ?? 4,
    blobHTTPHeaders: { blobContentType: 'application/octet-stream' },
    onProgress: (p) => progress(p.loadedBytes),
  });
  progress(size);
  opts.onValidating?.();
  const deadline = Date.now() + (opts.waitTimeoutMs ?? 10 * 60_000);
  for (let delay = 250; ; delay = Math.min(delay * 1.5, 3000)) {
    const l = await api.get<UserLora | SharedLora>(statusPath);
    if (l.status === 'ready' || l.status === 'rejected' || opts.wait === false) {
      return { flow, id, status: l.status, sha256: l.sha256, size_bytes: l.size_bytes, reject_reason: l.reject_reason };
    }
    if (Date.now() > deadline) throw new Error(`${id} is still ${l.status} after the wait; check it later with \`lora-router loras\``);
    await sleep(delay);
  }
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n');
}

const mib = (n: number) => `${(n / 1024 / 1024).toFixed(1)} MiB`;

export function register(program: Command, ctx: CliContext): void {
  program
    .command('upload')
    .description('upload a .safetensors LoRA (≤ 100 MB through the API, larger ones straight to storage) and wait until it is validated')
    .argument('<file>', 'path of the .safetensors file')
    .option('--shared', 'upload a shared (system) LoRA, keyed by filename (admin token)')
    .option('--name <filename>', 'shared LoRAs: the filename to register (default: the file name)')
    .option('--flow <flow>', 'force multipart or sas instead of choosing by size')
    .option('--no-wait', 'large files: return once the bytes are stored, without waiting for validation')
    .option('--json', 'print the result as JSON')
    .action(async (file: string, opts: { shared?: boolean; name?: string; flow?: string; wait: boolean; json?: boolean }) => {
      if (opts.flow !== undefined && opts.flow !== 'multipart' && opts.flow !== 'sas') throw new Error('--flow must be multipart or sas');
      const bar = new SingleBar(
        { format: ' {bar} {percentage}% | {value_mib}/{total_mib} MiB | {speed} MB/s | {phase}', hideCursor: true, noTTYOutput: false, stream: process.stderr },
        Presets.shades_classic,
      );
      const started = Date.now();
      let startedBar = false;
      const onProgress = (sent: number, total: number) => {
        const payload = { value_mib: (sent / 1048576).toFixed(1), total_mib: (total / 1048576).toFixed(1), speed: (sent / 1e6 / Math.max(0.001, (Date.now() - started) / 1000)).toFixed(1), phase: 'uploading' };
        if (!startedBar) {
          bar.start(total, sent, payload);
          startedBar = true;
        } else bar.update(sent, payload);
      };
      let result: UploadOutcome;
      try {
        result = await uploadLora(ctx.api(), file, {
          shared: opts.shared,
          name: opts.name,
          flow: opts.flow as 'multipart' | 'sas' | undefined,
          wait: opts.wait,
          onProgress,
          onValidating: () => startedBar && bar.update({ phase: 'validating' }),
        });
      } finally {
        if (startedBar) bar.stop();
      }
      if (opts.json) {
        process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
      } else if (result.status === 'ready') {
        process.stdout.write(`${result.id} ready (${mib(result.size_bytes)}, sha256 ${result.sha256}, ${result.flow})\n`);
      } else if (result.status === 'rejected') {
        process.stdout.write(`${result.id} rejected: ${result.reject_reason ?? 'invalid file'}\n`);
      } else {
        process.stdout.write(`${result.id} ${result.status}: stored, validation pending (check with \`lora-router loras\`)\n`);
      }
      if (result.status === 'rejected') process.exitCode = 2;
    });

  program
    .command('loras')
    .description('list your LoRAs (or the shared ones with --shared, admin token)')
    .option('--shared', 'list shared (system) LoRAs')
    .option('--json', 'print JSON')
    .action(async (opts: { shared?: boolean; json?: boolean }) => {
      if (opts.shared) {
        const { loras } = await ctx.api().get<{ loras: SharedLora[] }>('shared-loras');
        if (opts.json) return void process.stdout.write(`${JSON.stringify(loras, null, 2)}\n`);
        if (loras.length === 0) return void process.stdout.write('no shared LoRAs\n');
        const rows = [['FILENAME', 'STATUS', 'SIZE', 'SHA256', 'NOTE']];
        for (const l of loras) rows.push([l.filename, l.status, mib(l.size_bytes), (l.sha256 ?? '').slice(0, 12), l.reject_reason ?? '']);
        return void process.stdout.write(`${table(rows)}\n`);
      }
      const api = ctx.api();
      const loras = await allUserLoras((path) => api.get<UserLoraList>(path));
      if (opts.json) return void process.stdout.write(`${JSON.stringify(loras, null, 2)}\n`);
      if (loras.length === 0) return void process.stdout.write('no LoRAs yet: lora-router upload <file.safetensors>\n');
      const rows = [['ID', 'NAME', 'STATUS', 'SIZE', 'SHA256', 'CREATED', 'NOTE']];
      for (const l of loras) {
        rows.push([l.id, l.original_name, l.status, mib(l.size_bytes), (l.sha256 ?? '').slice(0, 12), l.created_at.slice(0, 19), l.reject_reason ?? '']);
      }
      process.stdout.write(`${table(rows)}\n`);
    });

  program
    .command('rm')
    .description('delete one of your LoRAs (record and file), or a shared one with --shared (admin token)')
    .argument('<id>', 'flat_file_id, or the filename with --shared')
    .option('--shared', 'delete a shared (system) LoRA by filename')
    .action(async (id: string, opts: { shared?: boolean }) => {
      await ctx.api().delete(`${opts.shared ? 'shared-loras' : 'user-loras'}/${encodeURIComponent(id)}`);
      process.stdout.write(`deleted ${id}\n`);
    });
}

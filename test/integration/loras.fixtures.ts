// Helpers for the LoRA library integration tests: multipart uploads, SAS uploads, polling, host memory.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { request, type ClientRequest } from 'node:http';
import { BlockBlobClient } from '@azure/storage-blob';
import type { ApiClient } from '../../api-client/index.js';
import type { CreateUploadResponse, UserLora } from '../../contract/loras.js';
import type { TestHost } from '../support/stack.js';

export const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
import { sleep } from '../support/helpers.js';
export { sleep };

export function form(bytes: Buffer | Blob, filename = 'my-lora.safetensors', fields: Record<string, string> = {}, partName = 'file'): FormData {
  const fd = new FormData();
  for (const [k, v] of Object.entries(fields)) fd.append(k, v);
  fd.append(partName, bytes instanceof Blob ? bytes : new Blob([bytes]), filename);
  return fd;
}

export async function jsonOf(res: Response): Promise<{ status: number; body: Record<string, unknown> & { error?: { code: string; message: string; details?: unknown } } }> {
  const text = await res.text();
  let body: Record<string, unknown> = {};
  try {
    body = text ? (JSON.parse(text) as Record<string, unknown>) : {};
  } catch {
    body = { raw: text };
  }
  return { status: res.status, body };
}

export async function uploadMultipart(api: ApiClient, bytes: Buffer | Blob, filename?: string, fields?: Record<string, string>, path = 'user-loras/upload') {
  return jsonOf(await api.raw('POST', path, { body: form(bytes, filename, fields) }));
}

/** The large-file flow as a client does it: session, then the SAS PUT (blocks above 8 MiB). */
export async function uploadViaSas(api: ApiClient, bytes: Buffer, name = 'big.safetensors', declared = bytes.length): Promise<CreateUploadResponse> {
  const session = await api.post<CreateUploadResponse>('user-loras', { original_name: name, size_bytes: declared });
  await new BlockBlobClient(session.upload_url).uploadData(bytes, { blockSize: 8 * 1024 * 1024, concurrency: 4 });
  return session;
}

/** Polls GET /user-loras/{id} until it leaves uploading/validating. */
export async function waitSettled(api: ApiClient, id: string, timeoutMs = 30_000): Promise<UserLora> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const lora = await api.get<UserLora>(`user-loras/${id}`);
    if (lora.status === 'ready' || lora.status === 'rejected') return lora;
    if (Date.now() > deadline) throw new Error(`LoRA ${id} still ${lora.status} after ${timeoutMs} ms`);
    await sleep(200);
  }
}

export async function blobExists(t: TestHost, container: string, name: string): Promise<boolean> {
  return t.clients.blobService.getContainerClient(container).getBlobClient(name).exists();
}

export async function blobNames(t: TestHost, container: string, prefix?: string): Promise<string[]> {
  const out: string[] = [];
  for await (const b of t.clients.blobService.getContainerClient(container).listBlobsFlat({ prefix })) out.push(b.name);
  return out;
}

/** Peak and current resident set size of a process, in MiB (Linux /proc). */
export function memoryOf(pid: number): { peakMiB: number; rssMiB: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  return { peakMiB: kb('VmHWM') / 1024, rssMiB: kb('VmRSS') / 1024 };
}

/** Fires the loraBlobCreated function directly with a BlobCreated event (as a redelivery would). */
export async function fireBlobCreated(t: TestHost, container: string, blobName: string): Promise<void> {
  const event = {
    id: `test-${Date.now()}`,
    eventType: 'Microsoft.Storage.BlobCreated',
    subject: `/blobServices/default/containers/${container}/blobs/${blobName}`,
    eventTime: new Date().toISOString(),
    data: { api: 'PutBlockList', url: `http://127.0.0.1/devstoreaccount1/${container}/${blobName}` },
    dataVersion: '',
  };
  const res = await fetch(`${t.host.url}/admin/functions/loraBlobCreated`, { method: 'POST', body: JSON.stringify({ input: event }), headers: { 'x-functions-key': t.host.adminKey } });
  if (res.status !== 202) throw new Error(`loraBlobCreated: HTTP ${res.status}`);
}

/**
 * A raw POST whose body the caller writes (a false content-length, a chunked stream: what fetch will not send);
 * resolves with the answer. The server may answer and close before the body is sent: socket errors matching
 * `expectedErrors` are that, not a failure.
 */
export function rawPost(url: URL, headers: Record<string, string>, write: (req: ClientRequest) => void, expectedErrors = /socket hang up/): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'POST', headers }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => {
        resolve({ status: res.statusCode ?? 0, body });
        req.destroy();
      });
    });
    req.on('error', (err) => (expectedErrors.test(err.message) ? undefined : reject(err)));
    write(req);
  });
}

// Browser uploads, the same two flows as the CLI (cli/commands/loras.ts): up to 100 MB one multipart POST through the
// API (validated before it answers); larger files get an upload session and go straight to Blob Storage through the
// SAS URL in 8 MiB blocks (Put Block ×N, then Put Block List), four at a time. XHR, because fetch has no upload
// progress events.
import type { CreateUploadResponse, DirectUploadResponse } from '../../contract/loras.js';
import { MAX_DIRECT_UPLOAD_BYTES } from './limits.js';
import { API_BASE, ApiError, type Api } from './api.js';

export type Flow = 'multipart' | 'sas';
export interface UploadResult {
  flat_file_id: string;
  status: DirectUploadResponse['status'];
  reject_reason: string | null;
}

const BLOCK_BYTES = 8 * 1024 * 1024;
const CONCURRENCY = 4;

/** Tests force the SAS flow for a small file with localStorage['lora-router.upload-flow'] = 'sas'. */
export function chooseFlow(size: number): Flow {
  const forced = localStorage.getItem('lora-router.upload-flow');
  if (forced === 'sas' || forced === 'multipart') return forced;
  return size <= MAX_DIRECT_UPLOAD_BYTES ? 'multipart' : 'sas';
}

interface XhrResult {
  status: number;
  text: string;
}

function xhr(method: string, url: string, body: XMLHttpRequestBodyInit, headers: Record<string, string>, onProgress: (loaded: number) => void, signal: AbortSignal): Promise<XhrResult> {
  return new Promise((resolve, reject) => {
    const req = new XMLHttpRequest();
    req.open(method, url);
    for (const [k, v] of Object.entries(headers)) req.setRequestHeader(k, v);
    req.upload.onprogress = (e) => onProgress(e.loaded);
    req.onload = () => resolve({ status: req.status, text: req.responseText });
    req.onerror = () => reject(new ApiError(0, 'network', 'The upload was interrupted: cannot reach the server.'));
    req.onabort = () => reject(new ApiError(0, 'aborted', 'Upload cancelled.'));
    signal.addEventListener('abort', () => req.abort(), { once: true });
    req.send(body);
  });
}

function apiErrorFrom(r: XhrResult, what: string): ApiError {
  try {
    const body = JSON.parse(r.text) as { error?: { code: string; message: string } };
    if (body.error) return new ApiError(r.status, body.error.code, body.error.message);
  } catch {
    /* not JSON */
  }
  // Blob Storage answers in XML: keep its <Message> when there is one.
  const xml = /<Message>([^<]*)<\/Message>/.exec(r.text)?.[1];
  return new ApiError(r.status, 'http_error', `${what} failed (HTTP ${r.status})${xml ? `: ${xml.split('\n')[0]}` : ''}.`);
}

export async function uploadFile(api: Api, file: File, onProgress: (sent: number, total: number) => void, signal: AbortSignal): Promise<UploadResult & { flow: Flow }> {
  if (file.size === 0) throw new ApiError(400, 'invalid_request', `${file.name} is empty.`);
  const flow = chooseFlow(file.size);
  if (flow === 'multipart') {
    const form = new FormData();
    form.set('size_bytes', String(file.size));
    form.set('file', file, file.name);
    const r = await xhr('POST', `${API_BASE}/user-loras/upload`, form, await api.authHeader(), (n) => onProgress(Math.min(n, file.size), file.size), signal);
    if (r.status !== 201 && r.status !== 200) throw apiErrorFrom(r, 'Upload');
    const body = JSON.parse(r.text) as DirectUploadResponse;
    onProgress(file.size, file.size);
    return { flow, flat_file_id: body.flat_file_id, status: body.status, reject_reason: body.reject_reason };
  }

  const session = await api.post<CreateUploadResponse>('user-loras', { original_name: file.name, size_bytes: file.size });
  const blocks: { id: string; start: number; end: number }[] = [];
  for (let start = 0, i = 0; start < file.size; start += BLOCK_BYTES, i += 1) {
    blocks.push({ id: btoa(`block-${String(i).padStart(6, '0')}`), start, end: Math.min(file.size, start + BLOCK_BYTES) });
  }
  const loaded = new Array<number>(blocks.length).fill(0);
  const report = () => onProgress(loaded.reduce((a, b) => a + b, 0), file.size);
  let next = 0;
  const worker = async () => {
    while (next < blocks.length) {
      const i = next++;
      const b = blocks[i]!;
      const url = `${session.upload_url}&comp=block&blockid=${encodeURIComponent(b.id)}`;
      const r = await xhr('PUT', url, file.slice(b.start, b.end), {}, (n) => {
        loaded[i] = n;
        report();
      }, signal);
      if (r.status !== 201) throw apiErrorFrom(r, 'Sending the file to storage');
      loaded[i] = b.end - b.start;
      report();
    }
  };
  await Promise.all(Array.from({ length: Math.min(CONCURRENCY, blocks.length) }, worker));
  const list = `<?xml version="1.0" encoding="utf-8"?><BlockList>${blocks.map((b) => `<Latest>${b.id}</Latest>`).join('')}</BlockList>`;
  const r = await xhr('PUT', `${session.upload_url}&comp=blocklist`, list, { 'x-ms-blob-content-type': 'application/octet-stream' }, () => {}, signal);
  if (r.status !== 201) throw apiErrorFrom(r, 'Finishing the upload');
  // Stored: the BlobCreated trigger validates it now; the list shows the verdict when it lands.
  return { flow, flat_file_id: session.flat_file_id, status: 'validating', reject_reason: null };
}

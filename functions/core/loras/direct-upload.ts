// POST /api/user-loras/upload and /api/shared-loras/upload: a multipart body with one `file` part (≤ 100 MB),
// streamed through busboy into a block blob while it is hashed — the file is never held whole in memory (at most a
// few 4 MiB blocks in flight). The request itself then validates the blob (ranged reads) and answers with the verdict:
// 201 ready, 422 invalid_lora (nothing is kept), 429 quota_exceeded, 413 too_large.
import { createHash } from 'node:crypto';
import { Readable, Transform, type TransformCallback } from 'node:stream';
import busboy from 'busboy';
import { sanitizeOriginalName, sharedFilenameSchema } from '../../../contract/ids.js';
import { MAX_DIRECT_UPLOAD_BYTES } from '../../../contract/loras.js';
import { ApiError, badRequest } from '../errors.js';
import { formatBytes } from '../../../contract/bytes.js';
import { blobState, deleteBlobIfExists } from './blob-io.js';
import type { LoraDeps } from './deps.js';
import type { LoraDoc } from './records.js';
import { enforceUserQuota, newUploadRecord, storeUploadRecord } from './sessions.js';
import { deleteLora } from './store.js';
import { judgeBlob, settleVerdict } from './verdict.js';

/** Room for the multipart framing around a 100 MB file when the Content-Length is checked up front. */
export const MULTIPART_OVERHEAD_BYTES = 64 * 1024;
/** A multipart request writes its blob within minutes (the Functions HTTP timeout is 230 s); after this it is swept. */
export const DIRECT_UPLOAD_EXPIRY_MS = 15 * 60_000;
const BLOCK_BYTES = 4 * 1024 * 1024;
const BLOCK_CONCURRENCY = 4;

export type DirectTarget = { kind: 'user'; tenantId: string } | { kind: 'shared' };

export interface DirectUploadInput {
  contentType: string | null;
  contentLength: number | null;
  body: Readable | null;
}

export interface DirectUploadResult {
  doc: LoraDoc;
}

const tooLarge = () =>
  new ApiError(
    'too_large',
    `the file is larger than ${formatBytes(MAX_DIRECT_UPLOAD_BYTES)}, the limit for a multipart upload; ` +
      'use the large-file flow instead (POST /api/user-loras with {original_name, size_bytes}, then PUT to the upload_url)',
    { max_bytes: MAX_DIRECT_UPLOAD_BYTES },
  );

class HashingCounter extends Transform {
  readonly hash = createHash('sha256');
  bytes = 0;
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.hash.update(chunk);
    this.bytes += chunk.length;
    cb(null, chunk);
  }
}

/** 400 unless the request says multipart/form-data with a boundary. */
export function checkMultipartHeaders(input: Pick<DirectUploadInput, 'contentType' | 'contentLength'>): void {
  const type = input.contentType ?? '';
  if (!/^multipart\/form-data\s*;/i.test(type) || !/boundary=/i.test(type)) {
    throw badRequest(
      `expected Content-Type: multipart/form-data with a \`file\` part, got ${type ? type.split(';')[0] : 'no Content-Type'}; ` +
        'for files over 100 MB use POST /api/user-loras (JSON) and upload to the returned URL',
    );
  }
  if (input.contentLength !== null && input.contentLength > MAX_DIRECT_UPLOAD_BYTES + MULTIPART_OVERHEAD_BYTES) throw tooLarge();
}

interface Fields {
  size_bytes?: string;
  filename?: string;
}

/**
 * Parses the multipart body and streams its `file` part into the target's blob. Resolves once the blob is committed
 * and the verdict stored; throws ApiError for every client mistake, after removing what it created.
 */
export async function directUpload(deps: LoraDeps, target: DirectTarget, input: DirectUploadInput): Promise<DirectUploadResult> {
  checkMultipartHeaders(input);
  if (!input.body) throw badRequest('request body is empty; expected a multipart/form-data body with a `file` part');
  const declared = input.contentLength !== null ? Math.min(input.contentLength, MAX_DIRECT_UPLOAD_BYTES) : 0;
  if (target.kind === 'user') await enforceUserQuota(deps, target.tenantId, declared);

  let bb: busboy.Busboy;
  try {
    bb = busboy({
      headers: { 'content-type': input.contentType! },
      limits: { files: 1, fileSize: MAX_DIRECT_UPLOAD_BYTES, fields: 8, fieldSize: 4096, parts: 16, headerPairs: 100 },
    });
  } catch (err) {
    throw badRequest(`malformed multipart request: ${(err as Error).message}`);
  }

  const fields: Fields = {};
  const abort = new AbortController();
  let failure: ApiError | Error | undefined;
  let created: LoraDoc | undefined;
  let upload: Promise<{ sha256: string; bytes: number } | null> | undefined;
  let fileSeen = false;

  const fail = (err: ApiError | Error) => {
    failure ??= err;
    abort.abort();
  };

  bb.on('field', (name, value, info) => {
    if (name === 'file') return fail(badRequest('the `file` part must be a file upload (with a filename), not a plain form field'));
    if (info.valueTruncated) return fail(badRequest(`form field ${name} is too long`));
    if (name === 'size_bytes' || name === 'filename') fields[name] = value;
  });
  bb.on('filesLimit', () => fail(badRequest('send exactly one file, in the `file` part')));
  bb.on('partsLimit', () => fail(badRequest('too many form parts; send one `file` part')));
  bb.on('fieldsLimit', () => fail(badRequest('too many form fields')));
  bb.on('file', (name, stream, info) => {
    // A body that ends inside the part errors the part's stream too (busboy reports it on itself as well).
    stream.on('error', (err: Error) => fail(badRequest(`malformed multipart body: ${err.message}`)));
    if (name !== 'file' || fileSeen || failure) {
      stream.resume();
      if (name !== 'file') fail(badRequest(`unexpected file part \`${name}\`; send the LoRA in a part named \`file\``));
      return;
    }
    fileSeen = true;
    stream.on('limit', () => fail(tooLarge()));
    upload = startUpload(deps, target, fields, info.filename, declared, stream, abort.signal).then(
      (r) => {
        created = r.doc;
        return r.hashed;
      },
      (err: unknown) => {
        stream.resume();
        const e = err instanceof UploadStartError ? err : new UploadStartError(err);
        if (e.doc) created = e.doc;
        fail(e.reason as Error);
        return null;
      },
    );
  });

  const parsed = new Promise<void>((resolve) => {
    bb.once('close', resolve);
    bb.once('error', (err: Error) => {
      fail(badRequest(`malformed multipart body: ${err.message}`));
      resolve();
    });
    input.body!.once('error', (err: Error) => {
      fail(badRequest(`the request body could not be read: ${err.message}`));
      resolve();
    });
  });
  input.body.pipe(bb);

  // The answer waits for the whole body only when everything went well; a failure answers at once (the host then
  // reads and drops the rest of the body so the client gets the answer: Kestrel on Azure, local/request-body.ts here).
  const aborted = new Promise<void>((resolve) => abort.signal.addEventListener('abort', () => resolve(), { once: true }));
  await Promise.race([parsed, aborted]);
  const hashed = failure ? null : upload ? await upload : null;

  try {
    if (failure) throw failure;
    if (!fileSeen || !upload) throw badRequest('missing the `file` part: send the LoRA as multipart/form-data field `file`');
    if (!hashed || !created) throw failure ?? new Error('upload finished without a result');
    if (fields.size_bytes !== undefined && !/^\d{1,16}$/.test(fields.size_bytes)) {
      throw badRequest(`size_bytes must be a whole number of bytes, got ${JSON.stringify(fields.size_bytes.slice(0, 40))}`);
    }
    if (fields.size_bytes !== undefined && Number(fields.size_bytes) !== hashed.bytes) {
      throw badRequest(`size mismatch: size_bytes says ${fields.size_bytes} but the file part holds ${hashed.bytes} bytes`, {
        declared_bytes: Number(fields.size_bytes),
        received_bytes: hashed.bytes,
      });
    }
    return { doc: await judgeDirect(deps, created, hashed) };
  } catch (err) {
    if (upload) await upload.catch(() => null); // let the blob upload settle before cleaning up after it
    if (created) await cleanup(deps, created);
    throw err;
  }
}

class UploadStartError extends Error {
  constructor(
    readonly reason: unknown,
    readonly doc?: LoraDoc,
  ) {
    super('upload failed');
  }
}

async function startUpload(
  deps: LoraDeps,
  target: DirectTarget,
  fields: Fields,
  partFilename: string | undefined,
  declared: number,
  stream: Readable,
  signal: AbortSignal,
): Promise<{ doc: LoraDoc; hashed: { sha256: string; bytes: number } | null }> {
  let doc: LoraDoc;
  try {
    doc = newRecord(deps, target, fields, partFilename, declared);
    doc = await storeUploadRecord(deps, doc);
  } catch (err) {
    throw new UploadStartError(err);
  }
  if (signal.aborted) throw new UploadStartError(new Error('aborted'), doc);
  const blob = deps.blobService.getContainerClient(doc.container).getBlockBlobClient(doc.blob_name);
  try {
    // A shared filename can be reused once its holder was rejected, expired or deleted: clear any leftover blob.
    if (doc.kind === 'shared') await deleteBlobIfExists(blob);
  } catch (err) {
    throw new UploadStartError(err, doc);
  }
  const counter = new HashingCounter();
  stream.on('error', (err) => counter.destroy(err));
  stream.pipe(counter);
  try {
    await blob.uploadStream(counter, BLOCK_BYTES, BLOCK_CONCURRENCY, {
      abortSignal: signal,
      blobHTTPHeaders: { blobContentType: 'application/octet-stream' },
      // Never silently replace: a user blob name is fresh, a shared one was cleared when its record was replaced.
      conditions: { ifNoneMatch: '*' },
    });
  } catch (err) {
    stream.resume();
    throw new UploadStartError(signal.aborted ? new Error('aborted') : err, doc);
  }
  if (signal.aborted) throw new UploadStartError(new Error('aborted'), doc);
  return { doc, hashed: { sha256: counter.hash.digest('hex'), bytes: counter.bytes } };
}

function newRecord(deps: LoraDeps, target: DirectTarget, fields: Fields, partFilename: string | undefined, declared: number): LoraDoc {
  let doc: LoraDoc;
  if (target.kind === 'shared') {
    const raw = fields.filename ?? (partFilename ?? '').split(/[\\/]/).pop() ?? '';
    const name = sharedFilenameSchema.safeParse(raw);
    if (!name.success) {
      throw badRequest(
        `bad filename ${JSON.stringify(raw.slice(0, 120))}: a shared LoRA needs a plain file name of letters, digits, . _ - ending in .safetensors`,
      );
    }
    doc = newUploadRecord(deps, { kind: 'shared', filename: name.data }, { originalName: name.data, declaredBytes: declared, flow: 'direct' });
  } else {
    const original = sanitizeOriginalName(partFilename ?? '');
    doc = newUploadRecord(deps, { kind: 'user', tenantId: target.tenantId }, { originalName: original, declaredBytes: declared, flow: 'direct' });
  }
  return { ...doc, upload_expires_at: new Date(deps.now() + DIRECT_UPLOAD_EXPIRY_MS).toISOString() };
}

async function judgeDirect(deps: LoraDeps, doc: LoraDoc, hashed: { sha256: string; bytes: number }): Promise<LoraDoc> {
  const blob = deps.blobService.getContainerClient(doc.container).getBlockBlobClient(doc.blob_name);
  const state = await blobState(blob);
  if (!state) throw new ApiError('conflict', 'the LoRA was deleted while it was being uploaded');
  const verdict = await judgeBlob(deps, doc, blob, state, hashed);
  const settled = await settleVerdict(deps, doc, blob, verdict);
  if (settled.kind === 'gone') throw new ApiError('conflict', 'the LoRA was deleted while it was being uploaded');
  const final = settled.doc;
  if (final.status === 'ready') return final;
  // Rejected: the caller gets the reason now, so nothing is kept (settleVerdict already removed the blob).
  await deleteLora(deps, final);
  if (!verdict.ok && verdict.error === 'quota_exceeded') throw new ApiError('quota_exceeded', verdict.reason, verdict.details);
  throw new ApiError('invalid_lora', final.reject_reason ?? 'the file is not a valid safetensors LoRA', { reason_code: final.reject_code ?? null });
}

async function cleanup(deps: LoraDeps, doc: LoraDoc): Promise<void> {
  try {
    await deleteBlobIfExists(deps.blobService.getContainerClient(doc.container).getBlockBlobClient(doc.blob_name));
    await deleteLora(deps, doc);
  } catch (err) {
    deps.log.warn({ err, lora: doc.id }, 'could not clean up a failed multipart upload; the upload sweeper will');
  }
}

/** The request body as a Node stream (the Functions HttpRequest exposes a web ReadableStream). */
export function nodeBody(body: ReadableStream<Uint8Array> | null | undefined): Readable | null {
  return body ? Readable.fromWeb(body as import('node:stream/web').ReadableStream<Uint8Array>) : null;
}

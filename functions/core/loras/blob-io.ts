// Reading an uploaded blob without ever holding it: ranged reads for the validator, one streaming GET for sha256.
// Every read carries If-Match on the ETag that was judged, so a blob replaced mid-validation fails the read (412)
// instead of mixing two versions into one verdict.
import { createHash } from 'node:crypto';
import type { BlobClient } from '@azure/storage-blob';
import { checkRange, type RangeSource } from '../safetensors/range-source.js';
import { isNotFound, isPreconditionFailed } from '../sdk-errors.js';

/** Safetensors headers of real LoRAs are ~100 KiB; refusing more than this keeps validation to a few small GETs. */
export const VALIDATION_MAX_HEADER_BYTES = 16 * 1024 * 1024;

export interface BlobState {
  etag: string;
  size: number;
}

/** ETags arrive quoted from the SDK and unquoted in Event Grid events. */
export const normalizeEtag = (etag: string | null | undefined): string => (etag ?? '').replace(/^W\//, '').replace(/"/g, '');

/** The blob's current ETag and size, or null when it does not exist. */
export async function blobState(blob: BlobClient): Promise<BlobState | null> {
  try {
    const p = await blob.getProperties();
    return { etag: p.etag ?? '', size: p.contentLength ?? 0 };
  } catch (err) {
    if (isNotFound(err)) return null;
    throw err;
  }
}

/** Thrown when the blob changed (or vanished) while it was being read. */
export class BlobChangedError extends Error {
  constructor(blobName: string) {
    super(`blob ${blobName} changed or disappeared while it was being read`);
    this.name = 'BlobChangedError';
  }
}

function translate(err: unknown, blob: BlobClient): unknown {
  return isPreconditionFailed(err) || isNotFound(err) ? new BlobChangedError(blob.name) : err;
}

async function collect(stream: NodeJS.ReadableStream, expected: number): Promise<Buffer> {
  const out = Buffer.allocUnsafe(expected);
  let filled = 0;
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    if (filled + chunk.length > expected) throw new Error(`ranged read returned more than the ${expected} bytes asked for`);
    chunk.copy(out, filled);
    filled += chunk.length;
  }
  if (filled !== expected) throw new Error(`ranged read returned ${filled} of ${expected} bytes`);
  return out;
}

/** A RangeSource over one version of a blob: each read is one ranged GET with If-Match. */
export function blobRangeSource(blob: BlobClient, state: BlobState): RangeSource & { reads: number; bytesRead: number } {
  const source = {
    size: state.size,
    reads: 0,
    bytesRead: 0,
    async read(offset: number, length: number): Promise<Buffer> {
      checkRange(state.size, offset, length);
      if (length === 0) return Buffer.alloc(0);
      source.reads += 1;
      source.bytesRead += length;
      try {
        const res = await blob.download(offset, length, { conditions: { ifMatch: state.etag } });
        return await collect(res.readableStreamBody!, length);
      } catch (err) {
        throw translate(err, blob);
      }
    },
  };
  return source;
}

/** sha256 and byte count of one version of a blob, streamed in a single GET (the SDK resumes it on a dropped connection). */
export async function hashBlob(blob: BlobClient, state: BlobState): Promise<{ sha256: string; bytes: number }> {
  const hash = createHash('sha256');
  let bytes = 0;
  try {
    const res = await blob.download(0, undefined, { conditions: { ifMatch: state.etag }, maxRetryRequests: 5 });
    for await (const chunk of res.readableStreamBody! as AsyncIterable<Buffer>) {
      hash.update(chunk);
      bytes += chunk.length;
    }
  } catch (err) {
    throw translate(err, blob);
  }
  return { sha256: hash.digest('hex'), bytes };
}

/** Deletes the blob if it is there; true when something was deleted. */
export async function deleteBlobIfExists(blob: BlobClient): Promise<boolean> {
  const res = await blob.deleteIfExists({ deleteSnapshots: 'include' });
  return res.succeeded;
}

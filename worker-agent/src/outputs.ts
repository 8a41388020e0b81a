// Delivers a run's output folder to the control plane: every file the executor left there (result.json aside: that is
// the job's result) is declared to the API, which answers with a write-only upload URL per file for this job and epoch
// only; each file is then read once and streamed to its URL (one Put Blob up to 256 MiB, parallel blocks above) with its sha256 computed on the way, and the list (name, size, sha256,
// content type) travels with the `succeeded` report, which records them on the job in one compare-and-swap.
//
// Failures map like the rest of a run: a 409 (the attempt moved on) stops the run without a report; a 413 (over the
// per-job limits) or an unusable file name fails the job for good with the API's message; network or storage trouble
// fails the attempt as retryable (another attempt starts from a clean folder, under its own epoch's names).
import { createHash } from 'node:crypto';
import { createReadStream, readdirSync, statSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { Transform } from 'node:stream';
import { join } from 'node:path';
import { BlockBlobClient } from '@azure/storage-blob';
import type { OutputUploadRequest, OutputUploadResponse, JobOutput } from '../../contract/outputs.js';
import { contentTypeFor, outputNameSchema } from '../../contract/outputs.js';
import type { Answer, RetryPolicy } from './api.js';

export const RESULT_FILE = 'result.json';
/** Block size and parallel blocks per file for the streamed upload (Put Block + Put Block List). */
const BLOCK_BYTES = 4 * 1024 * 1024;
const BLOCKS_IN_FLIGHT = 4;
const FILES_IN_FLIGHT = 2;

export interface OutputFile {
  name: string;
  path: string;
  size_bytes: number;
  content_type: string;
}

export type DeliveryResult =
  | { kind: 'delivered'; outputs: JobOutput[]; bytes: number; ms: number }
  | { kind: 'stale'; reason: string }
  | { kind: 'failed'; reason: string; retryable: boolean };

export interface OutputsApi {
  outputUploads(jobId: string, body: OutputUploadRequest, policy: RetryPolicy): Promise<Answer<OutputUploadResponse>>;
}

/**
 * The files to deliver: regular files at the top of `dir` and below it, named by their path with '/' → '_' (outputs
 * have flat names). A name the API would refuse is an error naming the file, so the job's log says what to rename.
 */
export function collectOutputs(dir: string): OutputFile[] {
  const out: OutputFile[] = [];
  const walk = (abs: string, rel: string): void => {
    let entries;
    try {
      entries = readdirSync(abs, { withFileTypes: true });
    } catch {
      return; // no output folder: no outputs
    }
    for (const e of entries.sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const childRel = rel ? `${rel}_${e.name}` : e.name;
      const childAbs = join(abs, e.name);
      if (e.isDirectory()) walk(childAbs, childRel);
      else if (e.isFile() && !(rel === '' && e.name === RESULT_FILE)) {
        if (!outputNameSchema.safeParse(childRel).success) {
          throw new InvalidOutputError(`output file ${JSON.stringify(childRel)}: names must be 1-200 chars of A-Z a-z 0-9 . _ - and not start with a dot`);
        }
        out.push({ name: childRel, path: childAbs, size_bytes: statSync(childAbs).size, content_type: contentTypeFor(childRel) });
      }
    }
  };
  walk(dir, '');
  return out;
}

export class InvalidOutputError extends Error {
  override readonly name = 'InvalidOutputError';
}

/** Files up to this size go in one streamed Put Blob (as the SDK's uploadFile does); larger ones as parallel blocks. */
const SINGLE_SHOT_BYTES = 256 * 1024 * 1024;

/**
 * Uploads one file to a SAS URL and returns its sha256. The file is read once, sequentially: each block is hashed as
 * it is read and staged while the next ones are read (at most BLOCKS_IN_FLIGHT blocks in memory), so memory stays
 * bounded whatever the file size. The executor has finished, so the file no longer changes; its size is checked.
 */
export async function uploadFileToSas(path: string, url: string, contentType: string, signal?: AbortSignal): Promise<{ sha256: string; bytes: number }> {
  const size = statSync(path).size;
  const client = new BlockBlobClient(url);
  const hash = createHash('sha256');
  const headers = { blobHTTPHeaders: { blobContentType: contentType }, abortSignal: signal };
  const fh = await open(path, 'r');
  try {
    if (size <= SINGLE_SHOT_BYTES) {
      // A body factory: the SDK calls it again on a retry, so each call hashes from the start.
      let last = { hash, bytes: 0 };
      const body = () => {
        const current = { hash: createHash('sha256'), bytes: 0 };
        last = current;
        const tap = new Transform({
          transform(chunk: Buffer, _e, cb) {
            current.hash.update(chunk);
            current.bytes += chunk.length;
            cb(null, chunk);
          },
        });
        return createReadStream(path, { highWaterMark: 1024 * 1024 }).pipe(tap);
      };
      await client.upload(body, size, headers);
      if (last.bytes !== size) throw new Error(`${path} changed while it was uploaded`);
      return { sha256: last.hash.digest('hex'), bytes: size };
    }
    const ids: string[] = [];
    const inFlight = new Set<Promise<unknown>>();
    for (let offset = 0, i = 0; offset < size; offset += BLOCK_BYTES, i++) {
      const len = Math.min(BLOCK_BYTES, size - offset);
      const buf = Buffer.alloc(len);
      const { bytesRead } = await fh.read(buf, 0, len, offset);
      if (bytesRead !== len) throw new Error(`${path} changed while it was uploaded`);
      hash.update(buf);
      const id = Buffer.from(String(i).padStart(8, '0')).toString('base64');
      ids.push(id);
      const p = client.stageBlock(id, buf, len, { abortSignal: signal }).finally(() => inFlight.delete(p));
      inFlight.add(p);
      if (inFlight.size >= BLOCKS_IN_FLIGHT) await Promise.race(inFlight);
    }
    await Promise.all(inFlight);
    await client.commitBlockList(ids, headers);
    return { sha256: hash.digest('hex'), bytes: size };
  } finally {
    await fh.close();
  }
}

async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await fn(items[i]!);
      }
    }),
  );
  return out;
}

/** Declares, uploads and describes every output of one run. Never throws. */
export async function deliverOutputs(opts: {
  api: OutputsApi;
  jobId: string;
  epoch: number;
  outputDir: string;
  signal?: AbortSignal;
  onProgress?: (line: string) => void;
}): Promise<DeliveryResult> {
  const t0 = performance.now();
  let files: OutputFile[];
  try {
    files = collectOutputs(opts.outputDir);
  } catch (err) {
    return { kind: 'failed', retryable: false, reason: (err as Error).message };
  }
  if (files.length === 0) return { kind: 'delivered', outputs: [], bytes: 0, ms: 0 };

  let answer: Answer<OutputUploadResponse>;
  try {
    answer = await opts.api.outputUploads(
      opts.jobId,
      { epoch: opts.epoch, files: files.map((f) => ({ name: f.name, size_bytes: f.size_bytes, content_type: f.content_type })) },
      { retries: 6, maxDelayMs: 10_000, signal: opts.signal },
    );
  } catch (err) {
    return { kind: 'failed', retryable: true, reason: `could not get output upload URLs: ${(err as Error).message}` };
  }
  if (!answer.ok) {
    if (answer.status === 409 || answer.status === 404) return { kind: 'stale', reason: answer.message };
    return { kind: 'failed', retryable: false, reason: `outputs refused by the API (${answer.status}): ${answer.message}` };
  }
  const urls = new Map(answer.value.uploads.map((u) => [u.name, u.upload_url]));
  try {
    const outputs = await mapLimit(files, FILES_IN_FLIGHT, async (f): Promise<JobOutput> => {
      const url = urls.get(f.name);
      if (!url) throw new Error(`the API gave no upload URL for ${f.name}`);
      const { sha256, bytes } = await uploadFileToSas(f.path, url, f.content_type, opts.signal);
      if (bytes !== f.size_bytes) throw new Error(`${f.name} changed while it was uploaded (${f.size_bytes} → ${bytes} bytes)`);
      opts.onProgress?.(`[agent] uploaded output ${f.name} (${bytes} bytes, sha256 ${sha256.slice(0, 12)}…)`);
      return { name: f.name, size_bytes: bytes, sha256, content_type: f.content_type };
    });
    const bytes = outputs.reduce((n, o) => n + o.size_bytes, 0);
    return { kind: 'delivered', outputs, bytes, ms: performance.now() - t0 };
  } catch (err) {
    return { kind: 'failed', retryable: true, reason: `output upload failed: ${(err as Error).message}` };
  }
}

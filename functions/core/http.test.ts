import { createRequire } from 'node:module';
import type * as FunctionsTypes from '@azure/functions';
import { describe, expect, it } from 'vitest';
import { ApiError } from './errors.js';
import { MAX_JSON_BODY_BYTES, readJsonBody } from './http.js';

const functions = createRequire(import.meta.url)('@azure/functions') as typeof FunctionsTypes;
const MiB = 1024 * 1024;

/** A request whose chunked body (no Content-Length) would be `totalMiB` long; `pulled()` counts what was read. */
function chunkedRequest(totalMiB: number, headers: Record<string, string> = { 'content-type': 'application/json' }) {
  let pulled = 0;
  const chunk = new Uint8Array(MiB).fill(0x20);
  const stream = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (pulled >= totalMiB * MiB) return controller.close();
      pulled += chunk.length;
      controller.enqueue(chunk);
    },
  });
  const nativeRequest = new Request('http://127.0.0.1/api/jobs', { method: 'POST', headers, body: stream, duplex: 'half' } as RequestInit & { duplex: 'half' });
  const req = new functions.HttpRequest({ nativeRequest } as unknown as FunctionsTypes.HttpRequestInit);
  return { req, pulled: () => pulled };
}

describe('readJsonBody', () => {
  it('stops a chunked body at the limit instead of reading it whole', async () => {
    const { req, pulled } = chunkedRequest(64);
    const err = await readJsonBody(req).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ApiError);
    expect((err as ApiError).status).toBe(413);
    // Read up to the limit plus what the stream had buffered ahead, not the 64 MiB.
    expect(pulled()).toBeLessThan(MAX_JSON_BODY_BYTES + 4 * MiB);
  });

  it('reads a body under the limit', async () => {
    const nativeRequest = new Request('http://127.0.0.1/api/jobs', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"a":1}' });
    const req = new functions.HttpRequest({ nativeRequest } as unknown as FunctionsTypes.HttpRequestInit);
    expect(await readJsonBody(req)).toEqual({ a: 1 });
  });

  it('answers an empty body with a 400', async () => {
    const nativeRequest = new Request('http://127.0.0.1/api/jobs', { method: 'POST' });
    const req = new functions.HttpRequest({ nativeRequest } as unknown as FunctionsTypes.HttpRequestInit);
    await expect(readJsonBody(req)).rejects.toMatchObject({ status: 400 });
  });
});

describe('errorResponse for a failing backing service', () => {
  it('answers 503 + Retry-After for timeouts, throttling and dropped connections, and 500 for anything else', async () => {
    const { errorResponse } = await import('./http.js');
    const transient: unknown[] = [
      Object.assign(new Error('Timed out'), { name: 'TimeoutError', code: 'TimeoutError' }), // as @azure/cosmos's request/TimeoutError.js builds it
      Object.assign(new Error('throttled'), { code: 429 }), // Cosmos, beyond the SDK's retries
      Object.assign(new Error('server busy'), { statusCode: 503 }), // Storage
      Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' }),
      Object.assign(new Error('send failed'), { code: 'REQUEST_SEND_ERROR', cause: Object.assign(new Error('x'), { code: 'ECONNREFUSED' }) }),
    ];
    for (const err of transient) {
      const res = errorResponse(err);
      expect(res.status, String(err)).toBe(503);
      expect((res.headers as Record<string, string>)['Retry-After']).toBe('5');
      expect((res.jsonBody as { error: { code: string } }).error.code).toBe('unavailable');
    }
    for (const err of [new Error('bug'), Object.assign(new Error('gone'), { code: 404 }), Object.assign(new Error('cosmos internal'), { code: 500 })]) {
      expect(errorResponse(err).status, String(err)).toBe(500);
    }
  });
});

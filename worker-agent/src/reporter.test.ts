// Log batches fit the API's body limit whatever the lines look like: split by count and by encoded bytes.
import { describe, expect, it } from 'vitest';
import type { JobEventInput } from '../../contract/jobs.js';
import { MAX_JSON_BODY_BYTES } from '../../functions/core/http.js';
import type { Answer, ControlPlaneApi } from './api.js';
import { RunReporter } from './reporter.js';
import pino from 'pino';

/** The API's side of the event POST, as far as size goes: the body the agent would send, checked against the limit. */
function recordingApi(bodies: number[], lines: string[][]): ControlPlaneApi {
  return {
    claim: () => Promise.reject(new Error('not used')),
    heartbeat: () => Promise.reject(new Error('not used')),
    event: async (_jobId: string, ev: JobEventInput) => {
      const bytes = Buffer.byteLength(JSON.stringify(ev));
      bodies.push(bytes);
      if (ev.type === 'log') lines.push(ev.lines);
      if (bytes > MAX_JSON_BODY_BYTES) return { ok: false, status: 413, code: 'too_large', message: 'too large' } as Answer<never>;
      return { ok: true, value: { ok: true, cancel_requested: false } } as unknown as Answer<never>;
    },
  };
}

describe('log batches', () => {
  it.each([
    ['500 lines of 8000 plain characters', 'x'.repeat(8000)],
    ['500 lines of 8000 control characters (6 bytes each when escaped)', '\u0001'.repeat(8000)],
    ['500 lines of 2000 four-byte characters', '😀'.repeat(2000)],
  ])('%s: every event fits the 1 MiB body limit and no line is lost', async (_name, line) => {
    const bodies: number[] = [];
    const sent: string[][] = [];
    const r = new RunReporter({ api: recordingApi(bodies, sent), jobId: 'j', epoch: 1, log: pino({ level: 'silent' }), onStop: () => {}, flushMs: 10 });
    for (let i = 0; i < 500; i++) r.line('stdout', line);
    await r.flush();
    expect(Math.max(...bodies)).toBeLessThanOrEqual(MAX_JSON_BODY_BYTES);
    expect(sent.flat().length).toBe(500);
    expect(r.stats.lines).toBe(500);
  });
});

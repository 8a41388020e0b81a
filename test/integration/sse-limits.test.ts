// Open event streams are capped per tenant and per host instance: past a cap a clear 429, and closing a stream frees
// its slot. Real HTTP against the dev host, jobs left pending (their pool's only machine never beats) so streams stay open.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ApiClient } from '../../api-client/index.js';
import { startTestHost, type TestHost } from '../support/stack.js';
import { errorOf, sleep, suffix } from './jobs.fixtures.js';

let t: TestHost;
/** A pool with a registered machine that never beats: jobs there are accepted and stay pending. */
const pool = `nomachines${suffix()}`;
beforeAll(async () => {
  t = await startTestHost({ SSE_MAX_STREAMS_PER_TENANT: '2', SSE_MAX_STREAMS: '3' }, { timers: false });
  await (await t.as('ops', 'admin')).post('machines', { machine_id: `gpu-silent-${suffix()}`, pool, slots: 1 });
});
afterAll(async () => {
  await t?.stop();
});

async function pendingJob(api: ApiClient): Promise<string> {
  return (await api.post<{ job_id: string }>('jobs', { service_required: 'comfyui', pool })).job_id;
}

const open = (api: ApiClient, id: string) => api.raw('GET', `jobs/${id}/events`, { headers: { accept: 'text/event-stream' } });

describe('SSE connection caps', () => {
  it('caps streams per tenant and per server with a 429 that says which cap; a closed stream frees its slot', async () => {
    const [a, b, c] = await Promise.all([t.as(`sse-a-${suffix()}`), t.as(`sse-b-${suffix()}`), t.as(`sse-c-${suffix()}`)]);
    const [ja, jb, jc] = await Promise.all([pendingJob(a), pendingJob(b), pendingJob(c)]);
    const a1 = await open(a, ja);
    const a2 = await open(a, ja);
    expect([a1.status, a2.status]).toEqual([200, 200]);

    const a3 = await open(a, ja);
    const e3 = await errorOf(a3);
    expect(e3).toMatchObject({ status: 429, code: 'too_many_requests' });
    expect(e3.message).toMatch(/for your account \(2 of 2\)/);
    expect(a3.headers.get('retry-after')).toBe('5');

    const b1 = await open(b, jb);
    expect(b1.status).toBe(200);
    const c1 = await open(c, jc);
    const ec = await errorOf(c1);
    expect(ec).toMatchObject({ status: 429, code: 'too_many_requests' });
    expect(ec.message).toMatch(/this server has too many open event streams \(3 of 3\)/);

    // The client goes away: the slot comes back (the host notices the closed socket asynchronously).
    await a1.body!.cancel();
    let again: Response | undefined;
    for (let i = 0; i < 50; i++) {
      again = await open(c, jc);
      if (again.status === 200) break;
      await again.body?.cancel();
      await sleep(100);
    }
    expect(again!.status).toBe(200);
    for (const r of [a2, b1, again!]) await r.body?.cancel();
  });
});

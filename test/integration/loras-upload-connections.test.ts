// A 64 MB multipart upload and the connection it travels on, against the real dev host serving the real triggers
// (Azurite + cosmosdb-server). The demo's uploads failed with EPIPE on a loaded machine: the client sent its upload into
// a keep-alive connection the server had just closed as idle. And an upload the server refuses before reading it must
// still reach its answer, whatever the client does with the rest of its body.
import { Agent } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ApiClient } from '../../api-client/index.js';
import type { UserLora } from '../../contract/loras.js';
import { KEEP_ALIVE_TIMEOUT_MS } from '../../local/dev-host.js';
import { makeSafetensors } from '../../testkit/safetensors.js';
import { getOn, sendPastAnswer } from '../support/send-past-answer.js';
import { startTestHost, type TestHost } from '../support/stack.js';
import { form, jsonOf, sha256 } from './loras.fixtures.js';

const MB = 1024 * 1024;
let t: TestHost;
let big: Buffer;

beforeAll(async () => {
  t = await startTestHost({ USER_MAX_LORAS: '1' }, { timers: false });
  big = makeSafetensors({ dataBytes: 64 * MB, seed: 14, metadata: { format: 'pt' } });
});
afterAll(async () => {
  await t?.stop();
});

/** Blocks this process's event loop, as a client busy reading a large file on a loaded machine does. */
const busyFor = (ms: number) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

describe('a 64 MB multipart upload', () => {
  it('goes through a keep-alive connection left idle while the client was busy for longer than Node’s 5 s default', async () => {
    const user = await t.as('busy-client');
    // A connection in steady use, as the demo's is by the time it uploads (a fresh one did not show the failure).
    await (await user.raw('GET', 'me')).text();
    const list = await user.raw('GET', 'user-loras');
    await list.text();
    // Well past the old window (5 s + Node's 1 s grace): the client's own idle timer cannot run while it is busy, so it
    // reuses the connection; the server must not have closed it.
    busyFor(8_000);
    const { status, body } = await jsonOf(await user.raw('POST', 'user-loras/upload', { body: form(big, 'busy.safetensors') }));
    expect({ status, error: body.error }).toEqual({ status: 201, error: undefined });
    expect(body).toMatchObject({ status: 'ready', size_bytes: big.length, sha256: sha256(big) });
    // Clients retire idle connections by the advertised timeout; the server keeps them open that long.
    expect(list.headers.get('keep-alive')).toBe(`timeout=${KEEP_ALIVE_TIMEOUT_MS / 1000}`);
  });

  it('refused before it is read (quota) still gets its 429 to a client that sends the whole body first; the connection stays usable', async () => {
    const user: ApiClient = await t.as('over-quota');
    expect((await user.raw('POST', 'user-loras/upload', { body: form(makeSafetensors({ dataBytes: 4096, seed: 2 })) })).status).toBe(201);

    const boundary = 'lora-router-test-boundary';
    const head = Buffer.from(
      `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.safetensors"\r\nContent-Type: application/octet-stream\r\n\r\n`,
    );
    const tail = Buffer.from(`\r\n--${boundary}--\r\n`);
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const auth = { authorization: `Bearer ${user.options.token}` };
      const sent = await sendPastAnswer(
        user.url('user-loras/upload'),
        agent,
        { ...auth, 'content-type': `multipart/form-data; boundary=${boundary}`, 'content-length': head.length + big.length + tail.length },
        Buffer.concat([head, big.subarray(0, 64 * 1024)]),
        Buffer.concat([big.subarray(64 * 1024), tail]),
      );
      expect(sent.status).toBe(429);
      expect(sent.body).toMatchObject({ error: { code: 'quota_exceeded', details: { max_loras: 1, used_loras: 1 } } });
      const after = await getOn(user.url('user-loras'), agent, auth);
      expect(after).toMatchObject({ status: 200, reused: true });
      expect((JSON.parse(after.body) as { loras: UserLora[] }).loras).toHaveLength(1);
    } finally {
      agent.destroy();
    }
  });
});

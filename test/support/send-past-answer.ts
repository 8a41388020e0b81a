// A client that keeps sending its body after the server has answered, as clients that write the whole body before
// reading the answer do (and as any client does when the answer comes early). Real HTTP through a keep-alive agent.
import { once } from 'node:events';
import { request, type Agent, type IncomingMessage, type OutgoingHttpHeaders } from 'node:http';
import type { Socket } from 'node:net';

export interface PastAnswer {
  status: number | undefined;
  body: unknown;
  socket: Socket;
}

/**
 * Writes `first`, waits for the answer (the server answers without reading the rest), then writes `rest` (bytes, or a
 * count of filler bytes) and ends the body. Resolves once every byte has left the client, with the answer; a reset
 * connection rejects.
 */
export async function sendPastAnswer(url: string, agent: Agent, headers: OutgoingHttpHeaders, first: Buffer, rest: Buffer | number): Promise<PastAnswer> {
  const req = request(url, { method: 'POST', agent, headers });
  const failed = new Promise<never>((_, reject) => req.once('error', reject));
  const run = async (): Promise<PastAnswer> => {
    req.write(first);
    const [res] = (await once(req, 'response')) as [IncomingMessage];
    let text = '';
    for await (const c of res) text += String(c);
    // Queued without waiting for 'drain' (Node's client stops relaying it once the answer has ended); 'finish' comes
    // only when the server has taken the bytes off the socket (far more than the socket buffers hold).
    const restBytes = typeof rest === 'number' ? rest : rest.length;
    const filler = typeof rest === 'number' ? Buffer.alloc(1024 * 1024, 0x61) : undefined;
    for (let sent = 0; sent < restBytes; sent += 1024 * 1024) {
      const end = Math.min(sent + 1024 * 1024, restBytes);
      req.write(filler ? filler.subarray(0, end - sent) : (rest as Buffer).subarray(sent, end));
    }
    req.end();
    await once(req, 'finish');
    return { status: res.statusCode, body: text ? (JSON.parse(text) as unknown) : undefined, socket: req.socket as Socket };
  };
  return Promise.race([run(), failed]);
}

/** A GET through `agent`; says whether it went over a connection the agent already had. */
export async function getOn(url: string, agent: Agent, headers: OutgoingHttpHeaders = {}): Promise<{ status: number | undefined; reused: boolean; body: string }> {
  const req = request(url, { method: 'GET', agent, headers });
  req.end();
  const [res] = (await once(req, 'response')) as [IncomingMessage];
  let body = '';
  for await (const c of res) body += String(c);
  return { status: res.statusCode, reused: req.reusedSocket, body };
}

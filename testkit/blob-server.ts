// Test helper (used by tests and benchmarks only): a loopback HTTP server that serves byte ranges like Azure Blob Storage and
// can misbehave on demand — cut a connection part-way, serve corrupt bytes, answer with an error status, ignore
// Range, or hold responses until released.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface BlobBehavior {
  /** For the next `times` requests (default 1): send this many body bytes, then destroy the socket. */
  cutAfterBytes?: number;
  /** For the next `times` requests (default 1): send this many body bytes, then nothing more (the socket stays open). */
  stallAfterBytes?: number;
  /** For the next `times` requests: flip one byte in the middle of what is sent. */
  corrupt?: boolean;
  /** For the next `times` requests: answer with this status and no body. */
  status?: number;
  /** For the next `times` requests: ignore the Range header and answer 200 with the whole blob. */
  ignoreRange?: boolean;
  times?: number;
}

export interface RecordedRequest {
  name: string;
  range: string | null;
  status: number;
}

export class TestBlobServer {
  private server: Server | undefined;
  private base = '';
  private readonly blobs = new Map<string, Buffer>();
  private readonly behaviors = new Map<string, Required<Pick<BlobBehavior, 'times'>> & BlobBehavior>();
  private gate: Promise<void> | undefined;
  private openGate: (() => void) | undefined;
  readonly requests: RecordedRequest[] = [];

  async start(): Promise<this> {
    this.server = createServer((req, res) => {
      void this.handle(req, res);
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    const { port } = this.server.address() as AddressInfo;
    this.base = `http://127.0.0.1:${port}`;
    return this;
  }

  async close(): Promise<void> {
    this.release();
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /** A URL shaped like a SAS URL (the query string is a fake signature). */
  url(name: string): string {
    return `${this.base}/blobs/${encodeURIComponent(name)}?sv=2024-01-01&sig=test`;
  }

  put(name: string, data: Buffer): void {
    this.blobs.set(name, data);
  }

  behave(name: string, behavior: BlobBehavior): void {
    this.behaviors.set(name, { times: 1, ...behavior });
  }

  /** Holds every response until release() is called. */
  hold(): void {
    if (this.gate) return;
    this.gate = new Promise<void>((resolve) => {
      this.openGate = resolve;
    });
  }

  release(): void {
    this.openGate?.();
    this.gate = undefined;
    this.openGate = undefined;
  }

  requestsFor(name: string): RecordedRequest[] {
    return this.requests.filter((r) => r.name === name);
  }

  /** Resolves once at least n requests for `name` have arrived. */
  async waitForRequests(name: string, n: number): Promise<void> {
    while (this.requestsFor(name).length < n) await new Promise((r) => setTimeout(r, 5));
  }

  private takeBehavior(name: string): BlobBehavior | undefined {
    const b = this.behaviors.get(name);
    if (!b) return undefined;
    b.times -= 1;
    if (b.times <= 0) this.behaviors.delete(name);
    return b;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', this.base);
    const name = decodeURIComponent(url.pathname.replace(/^\/blobs\//, ''));
    const range = typeof req.headers.range === 'string' ? req.headers.range : null;
    const record: RecordedRequest = { name, range, status: 0 };
    this.requests.push(record);
    if (this.gate) await this.gate;

    const blob = this.blobs.get(name);
    const behavior = this.takeBehavior(name);
    if (!blob) {
      record.status = 404;
      res.writeHead(404).end();
      return;
    }
    if (behavior?.status) {
      record.status = behavior.status;
      res.writeHead(behavior.status).end();
      return;
    }
    let start = 0;
    let status = 200;
    const m = range && !behavior?.ignoreRange ? /^bytes=(\d+)-$/.exec(range) : null;
    if (m) {
      start = Number(m[1]);
      if (start >= blob.length) {
        record.status = 416;
        res.writeHead(416, { 'content-range': `bytes */${blob.length}` }).end();
        return;
      }
      status = 206;
    }
    let body = blob.subarray(start);
    if (behavior?.corrupt) {
      body = Buffer.from(body);
      const i = Math.floor(body.length / 2);
      body[i] = body[i]! ^ 0xff;
    }
    const headers: Record<string, string | number> = {
      'content-length': body.length,
      'content-type': 'application/octet-stream',
      'accept-ranges': 'bytes',
    };
    if (status === 206) headers['content-range'] = `bytes ${start}-${blob.length - 1}/${blob.length}`;
    record.status = status;
    res.writeHead(status, headers);
    if (behavior?.stallAfterBytes !== undefined) {
      res.write(body.subarray(0, behavior.stallAfterBytes));
      return; // close() ends it (closeAllConnections)
    }
    if (behavior?.cutAfterBytes !== undefined) {
      res.write(body.subarray(0, behavior.cutAfterBytes), () => {
        // Let the bytes leave, then drop the connection mid-body.
        setTimeout(() => res.socket?.destroy(), 20);
      });
      return;
    }
    res.end(body);
  }
}

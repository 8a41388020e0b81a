// A small local Functions host: it loads the very same trigger files Azure loads (dist/functions/triggers/*.js),
// captures their app.http / app.timer / app.eventGrid registrations, and serves them:
//  - HTTP routes under the host.json routePrefix, with streamed request and response bodies (like enableHttpStream);
//  - timers on their NCRONTAB schedules (%SETTING% references resolved from app settings), one run at a time;
//  - the Event Grid BlobCreated trigger, fired when a blob appears in the watched containers (Azurite has no Event Grid);
//  - POST /admin/functions/<name> runs a non-HTTP function now, as the real host's admin API does, and like it only
//    for a caller with the host key (`x-functions-key`).
import { randomUUID, timingSafeEqual } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pathToFileURL } from 'node:url';
import { createRequire } from 'node:module';
import type * as FunctionsTypes from '@azure/functions';
import type { BlobServiceClient } from '@azure/storage-blob';
import { Cron } from 'croner';
import type { Logger } from '../functions/core/logger.js';
import { DRAIN_LIMIT_BYTES, requestBody } from './request-body.js';

type FunctionsModule = typeof FunctionsTypes;

/**
 * The CommonJS module object the trigger files' `import { app }` binds to: patching its `app` methods captures their
 * registrations (ESM named-export detection misses some of its classes). Resolved from the triggers folder, so a
 * deploy package with its own node_modules (test/deploy) gets its own copy patched, not ours.
 */
function functionsModuleFor(triggersDir: string): FunctionsModule {
  return createRequire(join(triggersDir, 'index.js'))('@azure/functions') as FunctionsModule;
}

type AnyHandler = (trigger: unknown, context: FunctionsTypes.InvocationContext) => unknown;

interface HttpRegistration {
  name: string;
  methods: string[];
  route: string;
  matcher: RegExp;
  paramNames: string[];
  handler: AnyHandler;
}
interface TimerRegistration {
  name: string;
  schedule: string;
  runOnStartup: boolean;
  handler: AnyHandler;
}
interface EventGridRegistration {
  name: string;
  handler: AnyHandler;
}

export interface Registrations {
  /** The @azure/functions instance the triggers registered with (its HttpRequest/HttpResponse classes are used). */
  sdk: FunctionsModule;
  http: HttpRegistration[];
  timers: TimerRegistration[];
  eventGrid: EventGridRegistration[];
}

/** Route templates as the Functions host reads them: `jobs/{id}`, `x/{id?}`, `{id:int}` (constraint ignored), `app/{*path}`. */
export function compileRoute(template: string): { matcher: RegExp; paramNames: string[] } {
  const paramNames: string[] = [];
  // A trailing catch-all `{*rest}` matches the rest of the path, slashes included, or nothing at all.
  const catchAll = /\/?\{\*([A-Za-z_][A-Za-z0-9_]*)\}$/.exec(template.replace(/\/+$/, ''));
  const pattern = template
    .replace(/^\/+|\/+$/g, '')
    .replace(/\/?\{\*[A-Za-z_][A-Za-z0-9_]*\}$/, '')
    .split('/')
    .map((segment) =>
      segment.replace(/\{([A-Za-z_][A-Za-z0-9_]*)(?::[^}?]+)?(\?)?\}|([^{]+)/g, (_m, name: string, optional: string, literal: string) => {
        if (literal) return literal.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
        paramNames.push(name);
        return optional ? '([^/]*)' : '([^/]+)';
      }),
    )
    .join('/');
  if (catchAll) {
    paramNames.push(catchAll[1]!);
    return { matcher: new RegExp(`^${pattern}(?:/(.*))?$`, 'i'), paramNames };
  }
  return { matcher: new RegExp(`^${pattern}/?$`, 'i'), paramNames };
}

/** Imports the trigger files with the `app` registration methods captured instead of sent to a host. */
export async function loadRegistrations(triggersDir: string): Promise<Registrations> {
  const functions = functionsModuleFor(triggersDir);
  const regs: Registrations = { sdk: functions, http: [], timers: [], eventGrid: [] };
  const app = functions.app as unknown as Record<string, unknown>;
  app.http = (name: string, opts: { route?: string; methods?: string[]; handler: AnyHandler }) => {
    const route = opts.route ?? name;
    regs.http.push({ name, route, methods: (opts.methods ?? ['GET', 'POST']).map((m) => m.toUpperCase()), handler: opts.handler, ...compileRoute(route) });
  };
  app.timer = (name: string, opts: { schedule: string; runOnStartup?: boolean; handler: AnyHandler }) => {
    regs.timers.push({ name, schedule: opts.schedule, runOnStartup: Boolean(opts.runOnStartup), handler: opts.handler });
  };
  app.eventGrid = (name: string, opts: { handler: AnyHandler }) => {
    regs.eventGrid.push({ name, handler: opts.handler });
  };
  for (const unsupported of ['get', 'post', 'put', 'patch', 'deleteRequest', 'storageBlob', 'storageQueue', 'serviceBusQueue']) {
    app[unsupported] = (name: string) => {
      throw new Error(`dev host: trigger ${name} uses app.${unsupported}; register with app.http/app.timer/app.eventGrid`);
    };
  }
  const files = readdirSync(triggersDir).filter((f) => f.endsWith('.js')).sort();
  for (const file of files) await import(pathToFileURL(join(triggersDir, file)).href);
  return regs;
}

function context(functions: FunctionsModule, name: string, log: Logger): FunctionsTypes.InvocationContext {
  const child = log.child({ fn: name });
  return new functions.InvocationContext({
    invocationId: randomUUID(),
    functionName: name,
    logHandler: (level, ...args) => {
      const msg = args.map((a) => (typeof a === 'string' ? a : JSON.stringify(a))).join(' ');
      if (level === 'error') child.error(msg);
      else if (level === 'warning') child.warn(msg);
      else child.debug(msg);
    },
  });
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'Content-Type': 'application/json' });
  res.end(JSON.stringify(body));
}

function sendError(res: ServerResponse, status: number, code: string, message: string): void {
  sendJson(res, status, { error: { code, message } });
}

/** Bodies the dev host itself reads (admin invocations) stop at this many bytes: counted while streaming. */
export const ADMIN_BODY_LIMIT = 1024 * 1024;

class BodyTooLarge extends Error {}

async function readCapped(req: IncomingMessage, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const c of req) {
    total += (c as Buffer).length;
    if (total > limit) throw new BodyTooLarge();
    chunks.push(c as Buffer);
  }
  return Buffer.concat(chunks);
}

/** A body declared longer than the host drains is not waited for: the answer closes the connection. */
function declaredOverDrainLimit(req: IncomingMessage): boolean {
  const length = Number(req.headers['content-length'] ?? 0);
  return !req.complete && length > DRAIN_LIMIT_BYTES;
}

function keyMatches(given: string | string[] | undefined, expected: string): boolean {
  if (typeof given !== 'string') return false;
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

/**
 * How long an idle keep-alive connection stays open: Kestrel's default, which the real Functions host serves with.
 * Node's 5 s default was too short: a client whose event loop is busy for over 6 s (5 s + Node's 1 s grace) between two
 * requests, as the demo's was reading a 64 MB file on a loaded machine, cannot run the timer that retires its idle
 * socket, sends its next upload into the connection the server has just closed, and fails with EPIPE. Clients retire
 * idle sockets just before the advertised `Keep-Alive: timeout`, so this only needs to outlast their pauses.
 */
export const KEEP_ALIVE_TIMEOUT_MS = 130_000;

export interface DevHostOptions {
  port: number;
  triggersDir: string;
  routePrefix: string;
  /** Containers whose new blobs fire the Event Grid trigger(s). */
  blobWatch?: { service: BlobServiceClient; containers: string[]; pollMs?: number };
  timers: boolean;
  log: Logger;
  /** %NAME% lookups in timer schedules. */
  settings: Record<string, string | undefined>;
  /** The host key /admin/functions/* requires in `x-functions-key` (the real host requires its master key). */
  adminKey: string;
}

export interface DevHost {
  url: string;
  registrations: Registrations;
  close(): Promise<void>;
}

export async function startDevHost(opts: DevHostOptions): Promise<DevHost> {
  const registrations = await loadRegistrations(opts.triggersDir);
  const { log } = opts;
  const prefix = opts.routePrefix.replace(/^\/+|\/+$/g, '');
  const running = new Map<string, Promise<void>>();

  const runFunction = (name: string, trigger: unknown, handler: AnyHandler): Promise<void> => {
    // One invocation at a time per non-HTTP function: the real host holds a singleton lease for timers.
    const current = running.get(name);
    if (current) return current;
    const p = (async () => {
      try {
        await handler(trigger, context(registrations.sdk, name, log));
      } catch (err) {
        log.error({ err, fn: name }, 'function failed');
      } finally {
        running.delete(name);
      }
    })();
    running.set(name, p);
    return p;
  };

  const server: Server = createServer((req, res) => {
    void handle(req, res).catch((err) => {
      log.error({ err }, 'dev host error');
      if (!res.headersSent) sendJson(res, 500, { error: { code: 'internal', message: 'dev host error' } });
      else res.destroy();
    });
  });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', `http://${req.headers.host ?? '127.0.0.1'}`);
    const adminMatch = /^\/admin\/functions\/([A-Za-z0-9_-]+)$/.exec(url.pathname);
    if (adminMatch && req.method === 'POST') {
      if (!keyMatches(req.headers['x-functions-key'], opts.adminKey)) {
        return sendError(res, 401, 'unauthorized', 'the admin API needs the host key in x-functions-key');
      }
      const name = adminMatch[1]!;
      const timer = registrations.timers.find((t) => t.name === name);
      const eg = registrations.eventGrid.find((t) => t.name === name);
      if (!timer && !eg) return sendError(res, 404, 'not_found', `no non-HTTP function ${name}`);
      let raw: Buffer;
      try {
        raw = await readCapped(req, ADMIN_BODY_LIMIT);
      } catch (err) {
        if (err instanceof BodyTooLarge) return sendError(res, 413, 'too_large', `admin body over ${ADMIN_BODY_LIMIT} bytes`);
        throw err;
      }
      let input: unknown;
      if (raw.length > 0) {
        let body: unknown;
        try {
          body = JSON.parse(raw.toString('utf8'));
        } catch {
          return sendError(res, 400, 'invalid_request', 'admin body is not valid JSON; send {"input": ...}');
        }
        if (typeof body !== 'object' || body === null || Array.isArray(body)) {
          return sendError(res, 400, 'invalid_request', 'admin body must be a JSON object {"input": ...}');
        }
        input = (body as { input?: unknown }).input;
      }
      await runFunction(name, timer ? timerInfo(false) : input, (timer ?? eg)!.handler);
      res.writeHead(202).end();
      return;
    }
    const path = url.pathname.replace(/^\/+/, '');
    // The web app lives under the route prefix (/api/app/); the short local address /app/ points there.
    if (prefix && (path === 'app' || path.startsWith('app/')) && (req.method === 'GET' || req.method === 'HEAD')) {
      res.writeHead(302, { Location: `/${prefix}/${path}${url.search}` }).end();
      return;
    }
    if (prefix && !(path === prefix || path.startsWith(`${prefix}/`))) {
      return sendJson(res, 404, { error: { code: 'not_found', message: `no route ${url.pathname}` } });
    }
    let routePath: string;
    try {
      routePath = decodeURIComponent(prefix ? path.slice(prefix.length).replace(/^\/+/, '') : path);
    } catch {
      return sendError(res, 400, 'invalid_request', 'the URL path has a malformed % escape');
    }
    const method = (req.method ?? 'GET').toUpperCase();
    let pathMatched = false;
    for (const reg of registrations.http) {
      const m = reg.matcher.exec(routePath);
      if (!m) continue;
      pathMatched = true;
      if (!reg.methods.includes(method)) continue;
      const params: Record<string, string> = {};
      reg.paramNames.forEach((n, i) => {
        if (m[i + 1]) params[n] = m[i + 1]!;
      });
      const headers = new Headers();
      for (const [k, v] of Object.entries(req.headers)) {
        if (v !== undefined) headers.set(k, Array.isArray(v) ? v.join(', ') : v);
      }
      const body = method !== 'GET' && method !== 'HEAD' ? requestBody(req) : undefined;
      const nativeRequest = new Request(url, {
        method,
        headers,
        body: body?.stream,
        duplex: 'half', // Node's fetch needs this for a streamed request body
      } as RequestInit & { duplex: 'half' });
      const request = new registrations.sdk.HttpRequest({ nativeRequest, params, method, url: url.toString() } as unknown as FunctionsTypes.HttpRequestInit);
      let result: FunctionsTypes.HttpResponseInit | FunctionsTypes.HttpResponse | undefined;
      try {
        result = (await reg.handler(request, context(registrations.sdk, reg.name, log))) as typeof result;
      } finally {
        // Answered (or failed) before the whole body arrived: drop the rest so the client can finish sending and read
        // the answer; a body far past any limit closes the connection instead.
        body?.discardRest(() => req.socket.destroy());
      }
      const response = result instanceof registrations.sdk.HttpResponse ? result : new registrations.sdk.HttpResponse(result ?? { status: 204 });
      const outHeaders: Record<string, string> = {};
      response.headers.forEach((v, k) => (outHeaders[k] = v));
      if (declaredOverDrainLimit(req)) outHeaders.connection = 'close';
      res.writeHead(response.status, outHeaders);
      if (response.body && method !== 'HEAD') {
        const body = Readable.fromWeb(response.body as import('node:stream/web').ReadableStream);
        // Stop a streamed response when the client goes away. Not on the request's 'close': that also fires when an
        // unread request body ends, which cut short (and hung) answers to empty-body POSTs.
        res.once('close', () => {
          if (!res.writableFinished) body.destroy();
        });
        body.on('error', () => res.destroy());
        body.pipe(res);
      } else {
        res.end();
      }
      return;
    }
    if (pathMatched) return sendJson(res, 405, { error: { code: 'invalid_request', message: `method ${method} not allowed on /${path}` } });
    sendJson(res, 404, { error: { code: 'not_found', message: `no route ${url.pathname}` } });
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, '127.0.0.1', () => resolve());
  });
  server.keepAliveTimeout = KEEP_ALIVE_TIMEOUT_MS;
  const { port } = server.address() as { port: number };

  const crons: Cron[] = [];
  if (opts.timers) {
    for (const t of registrations.timers) {
      const schedule = t.schedule.replace(/%([A-Za-z0-9_]+)%/g, (_m, name: string) => {
        const v = opts.settings[name];
        if (!v) throw new Error(`timer ${t.name}: app setting ${name} is not set`);
        return v;
      });
      crons.push(new Cron(schedule, { protect: true }, () => runFunction(t.name, timerInfo(false), t.handler)));
      if (t.runOnStartup) void runFunction(t.name, timerInfo(false), t.handler);
    }
  }

  let watcher: NodeJS.Timeout | undefined;
  let closed = false;
  if (opts.blobWatch && registrations.eventGrid.length > 0) {
    const { service, containers, pollMs = 500 } = opts.blobWatch;
    const seen = new Set<string>();
    const poll = async () => {
      for (const container of containers) {
        const client = service.getContainerClient(container);
        for await (const blob of client.listBlobsFlat()) {
          const key = `${container}/${blob.name}@${blob.properties.etag}`;
          if (seen.has(key)) continue;
          seen.add(key);
          const event = blobCreatedEvent(client.url, container, blob.name, blob.properties.contentLength ?? 0, blob.properties.etag ?? '');
          for (const reg of registrations.eventGrid) void runEventGrid(reg, event);
        }
      }
    };
    const inFlight = new Set<Promise<void>>();
    const runEventGrid = (reg: EventGridRegistration, event: unknown) => {
      // Event Grid delivers events concurrently; each invocation is independent.
      const p = (async () => {
        try {
          await reg.handler(event, context(registrations.sdk, reg.name, log));
        } catch (err) {
          log.error({ err, fn: reg.name }, 'event grid function failed');
        }
      })();
      inFlight.add(p);
      void p.finally(() => inFlight.delete(p));
    };
    const loop = async () => {
      if (closed) return;
      try {
        await poll();
      } catch (err) {
        log.warn({ err: (err as Error).message }, 'blob watch poll failed');
      }
      if (!closed) watcher = setTimeout(loop, pollMs);
    };
    void loop();
  }

  return {
    url: `http://127.0.0.1:${port}`,
    registrations,
    close: async () => {
      closed = true;
      clearTimeout(watcher);
      for (const c of crons) c.stop();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
      await Promise.allSettled([...running.values()]);
    },
  };
}

function timerInfo(isPastDue: boolean): FunctionsTypes.Timer {
  const now = new Date().toISOString();
  return { isPastDue, schedule: { adjustForDST: false }, scheduleStatus: { last: now, next: now, lastUpdated: now } };
}

/** Shaped like the Microsoft.Storage.BlobCreated event Azure sends (Event Grid schema). */
export function blobCreatedEvent(containerUrl: string, container: string, blobName: string, contentLength: number, etag: string) {
  return {
    id: randomUUID(),
    topic: '/subscriptions/local/resourceGroups/local/providers/Microsoft.Storage/storageAccounts/devstoreaccount1',
    subject: `/blobServices/default/containers/${container}/blobs/${blobName}`,
    eventType: 'Microsoft.Storage.BlobCreated',
    eventTime: new Date().toISOString(),
    dataVersion: '',
    metadataVersion: '1',
    data: {
      api: 'PutBlockList',
      eTag: etag,
      contentType: 'application/octet-stream',
      contentLength,
      blobType: 'BlockBlob',
      url: `${containerUrl}/${blobName.split('/').map(encodeURIComponent).join('/')}`,
      sequencer: String(Date.now()).padStart(32, '0'),
    },
  };
}

export function readRoutePrefix(hostJsonPath: string): string {
  try {
    const host = JSON.parse(readFileSync(hostJsonPath, 'utf8')) as { extensions?: { http?: { routePrefix?: string } } };
    return host.extensions?.http?.routePrefix ?? 'api';
  } catch {
    return 'api';
  }
}

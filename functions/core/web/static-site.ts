// Serves the built web app (dist/web) from the Function App: same origin as the API, so the same bearer token works,
// no CORS, and one deployment. Host-free: takes a path, returns status, headers and bytes.
// - hashed assets (assets/*) are immutable for a year; index.html is revalidated every time (it names the hashes);
// - paths without a file extension fall back to index.html (client-side routes);
// - no path traversal: the resolved file must sit inside the root, and dot segments, backslashes and NULs are refused;
// - gzip when the client accepts it (the Functions host does not compress), computed once per file and kept.
import { readFileSync, statSync } from 'node:fs';
import { extname, join, resolve, sep } from 'node:path';
import { gzipSync } from 'node:zlib';

export const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.webp': 'image/webp',
  '.woff2': 'font/woff2',
  '.txt': 'text/plain; charset=utf-8',
  '.webmanifest': 'application/manifest+json',
};
const COMPRESSIBLE = new Set(['.html', '.js', '.mjs', '.css', '.json', '.map', '.svg', '.txt', '.webmanifest']);

export interface StaticResponse {
  status: number;
  headers: Record<string, string>;
  body?: Uint8Array;
}

interface CachedFile {
  raw: Buffer;
  gz?: Buffer;
  mtimeMs: number;
}

const SECURITY_HEADERS = {
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
};
// connect-src needs https: for direct-to-blob uploads (SAS URLs) and Entra sign-in; http: locally for Azurite.
const CSP =
  "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob: https: http:; " +
  "connect-src 'self' https: http:; frame-src https://login.microsoftonline.com; frame-ancestors 'none'; base-uri 'self'; form-action 'self'";

export class StaticSite {
  private readonly root: string;
  private readonly cache = new Map<string, CachedFile>();

  constructor(root: string) {
    this.root = resolve(root);
  }

  /** `relPath` is the part after /app/, already URL-decoded by the host. */
  serve(relPath: string | undefined, acceptEncoding: string | null): StaticResponse {
    const path = (relPath ?? '').replace(/^\/+/, '');
    if (!isSafeRelativePath(path)) return notFound('no such file');
    const ext = extname(path).toLowerCase();
    const isRoute = path === '' || ext === '';
    const file = isRoute ? 'index.html' : path;
    const abs = resolve(join(this.root, file));
    if (abs !== this.root && !abs.startsWith(this.root + sep)) return notFound('no such file');
    const cached = this.read(abs);
    if (!cached) {
      return isRoute
        ? { status: 503, headers: { 'Content-Type': 'text/plain; charset=utf-8', 'Cache-Control': 'no-store' }, body: Buffer.from('The web app is not built: run npm run build.\n') }
        : notFound(`no file ${path}`);
    }
    const fileExt = extname(file).toLowerCase();
    const headers: Record<string, string> = {
      ...SECURITY_HEADERS,
      'Content-Type': CONTENT_TYPES[fileExt] ?? 'application/octet-stream',
      'Cache-Control': file.startsWith('assets/') ? 'public, max-age=31536000, immutable' : 'no-cache',
      Vary: 'Accept-Encoding',
    };
    if (fileExt === '.html') headers['Content-Security-Policy'] = CSP;
    if (COMPRESSIBLE.has(fileExt) && /\bgzip\b/i.test(acceptEncoding ?? '') && cached.raw.length > 512) {
      cached.gz ??= gzipSync(cached.raw, { level: 9 });
      headers['Content-Encoding'] = 'gzip';
      headers['Content-Length'] = String(cached.gz.length);
      return { status: 200, headers, body: cached.gz };
    }
    headers['Content-Length'] = String(cached.raw.length);
    return { status: 200, headers, body: cached.raw };
  }

  private read(abs: string): CachedFile | undefined {
    let mtimeMs: number;
    try {
      const st = statSync(abs);
      if (!st.isFile()) return undefined;
      mtimeMs = st.mtimeMs;
    } catch {
      return undefined;
    }
    const hit = this.cache.get(abs);
    if (hit && hit.mtimeMs === mtimeMs) return hit; // a rebuild (npm run build during npm start) is picked up
    const entry: CachedFile = { raw: readFileSync(abs), mtimeMs };
    this.cache.set(abs, entry);
    return entry;
  }
}

/** Plain relative paths only: no dot segments, no backslashes, no NUL or control characters, no drive letters. */
export function isSafeRelativePath(path: string): boolean {
  if (path.length > 512) return false;
  if (/[\\\u0000-\u001f:]/.test(path)) return false;
  return path.split('/').every((seg) => seg !== '..' && seg !== '.' && !(seg === '' && path !== ''));
}

function notFound(message: string): StaticResponse {
  return {
    status: 404,
    headers: { 'Content-Type': 'application/json; charset=utf-8', 'Cache-Control': 'no-store', ...SECURITY_HEADERS },
    body: Buffer.from(JSON.stringify({ error: { code: 'not_found', message } })),
  };
}

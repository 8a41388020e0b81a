// The web app's server side without a browser: the static file server (types, caching, gzip, SPA fallback, no way
// out of the root), the sign-in settings it serves, the dev host's catch-all route, and the numbers the page copies.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { MAX_LORAS_PER_JOB } from '../../contract/jobs.js';
import { MAX_DIRECT_UPLOAD_BYTES } from '../../contract/loras.js';
import { loadConfig, type Config } from '../../functions/core/config.js';
import { webClientConfig } from '../../functions/core/web/client-config.js';
import { isSafeRelativePath, StaticSite } from '../../functions/core/web/static-site.js';
import { compileRoute } from '../../local/dev-host.js';
import { sampleSettings } from '../../local/settings.js';
import * as pageLimits from '../../web/src/limits.js';

const dir = mkdtempSync(join(tmpdir(), 'static-site-'));
const root = join(dir, 'web');
mkdirSync(join(root, 'assets'), { recursive: true });
const html = `<!doctype html><title>t</title>${'<!-- padding -->'.repeat(64)}`;
writeFileSync(join(root, 'index.html'), html);
writeFileSync(join(root, 'assets', 'index-abc123.js'), `console.log(${JSON.stringify('x'.repeat(4000))});`);
writeFileSync(join(dir, 'secret.txt'), 'outside the root');
const site = new StaticSite(root);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('StaticSite', () => {
  it('serves index.html for the root and for client-side routes, revalidated every time', () => {
    for (const path of ['', 'jobs', 'jobs/job_x']) {
      const r = site.serve(path, null);
      expect([r.status, r.headers['Content-Type'], r.headers['Cache-Control']]).toEqual([200, 'text/html; charset=utf-8', 'no-cache']);
      expect(Buffer.from(r.body!).toString()).toBe(html);
      expect(r.headers['Content-Security-Policy']).toContain("default-src 'self'");
    }
  });

  it('serves hashed assets as immutable, gzipped when the client accepts it', () => {
    const plain = site.serve('assets/index-abc123.js', null);
    expect([plain.status, plain.headers['Content-Type'], plain.headers['Cache-Control'], plain.headers['Content-Encoding']]).toEqual([
      200,
      'text/javascript; charset=utf-8',
      'public, max-age=31536000, immutable',
      undefined,
    ]);
    const gz = site.serve('assets/index-abc123.js', 'gzip, deflate, br');
    expect(gz.headers['Content-Encoding']).toBe('gzip');
    expect(gz.body!.length).toBeLessThan(plain.body!.length);
    expect(gunzipSync(gz.body!).equals(Buffer.from(plain.body!))).toBe(true);
    expect(gz.headers['Content-Length']).toBe(String(gz.body!.length));
  });

  it('answers 404 JSON for missing files and anything that tries to leave the root', () => {
    for (const path of ['assets/missing.js', '../secret.txt', 'assets/../../secret.txt', '..\\secret.txt', 'a/./b.js', 'x\u0000.js', 'C:/x.js', 'assets//index-abc123.js']) {
      const r = site.serve(path, null);
      expect({ path, status: r.status }).toEqual({ path, status: 404 });
      expect(JSON.parse(Buffer.from(r.body!).toString())).toMatchObject({ error: { code: 'not_found' } });
    }
    expect(isSafeRelativePath('assets/index-abc123.js')).toBe(true);
    expect(isSafeRelativePath('..')).toBe(false);
  });

  it('says the app is not built rather than serving nothing', () => {
    const r = new StaticSite(join(dir, 'nope')).serve('', null);
    expect(r.status).toBe(503);
    expect(Buffer.from(r.body!).toString()).toContain('npm run build');
  });
});

describe('web client config', () => {
  it('is a dev token locally and MSAL settings from the API registration with Entra ID', () => {
    expect(webClientConfig(loadConfig(sampleSettings()))).toEqual({ auth: 'local' });
    const tenant = '11111111-2222-3333-4444-555555555555';
    const api = '99999999-8888-7777-6666-555555555555';
    // Only the auth part matters here; the rest of an Azure config needs real endpoints.
    const entra = {
      auth: {
        mode: 'entra',
        issuer: `https://login.microsoftonline.com/${tenant}/v2.0`,
        audience: `api://${api}`,
        jwksUri: `https://login.microsoftonline.com/${tenant}/discovery/v2.0/keys`,
        machineTokenSecret: 'm'.repeat(40),
        adminRole: 'LoraRouter.Admin',
      },
    } as Config;
    expect(webClientConfig(entra, { WEB_CLIENT_ID: api })).toEqual({
      auth: 'entra',
      client_id: api,
      authority: `https://login.microsoftonline.com/${tenant}`,
      scopes: [`api://${api}/.default`],
      admin_role: 'LoraRouter.Admin',
    });
  });
});

describe('dev host routes', () => {
  it('matches a trailing catch-all with or without the rest of the path', () => {
    const { matcher, paramNames } = compileRoute('app/{*path}');
    expect(paramNames).toEqual(['path']);
    expect(matcher.exec('app')?.[1]).toBeUndefined();
    expect(matcher.exec('app/')?.[1]).toBe('');
    expect(matcher.exec('app/assets/index.js')?.[1]).toBe('assets/index.js');
    expect(matcher.test('apps')).toBe(false);
    expect(compileRoute('jobs/{id}').matcher.test('jobs/a/b')).toBe(false);
  });
});

describe('numbers the page copies from the contract', () => {
  it('match the contract', () => {
    expect(pageLimits.MAX_DIRECT_UPLOAD_BYTES).toBe(MAX_DIRECT_UPLOAD_BYTES);
    expect(pageLimits.MAX_LORAS_PER_JOB).toBe(MAX_LORAS_PER_JOB);
  });
});

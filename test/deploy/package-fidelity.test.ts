// The local stand-in for `azd deploy`, which cannot run here. It builds the Functions deployment package exactly as
// azd would (test/deploy/azd-package.ts: azd's walk + .funcignore with azd's matcher), copies it to a temp folder
// outside the repo, and does there what the Flex Consumption remote build (Oryx) does: `npm install` (all
// dependencies, `prepare` included), then `npm run build`; then it prunes dev dependencies and starts the Functions
// registrations from that folder alone with the dev host, against the emulators, and runs `lora-router smoke`'s checks.
//
// Differences from the real remote build, on purpose: npm prefers its local cache (--prefer-offline; a clone that ran
// `npm ci` has every tarball there), and runs with --ignore-scripts because better-sqlite3's install script downloads
// a prebuilt binary from GitHub, which this machine cannot reach (it is the worker agent's dependency; the Functions
// app never loads it); `prepare` and `build` are then run explicitly, as npm and Oryx would. The full install is the
// slow part (about 1000 packages: the dev tooling the remote build also installs).
import { spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runSmoke } from '../../cli/commands/smoke.js';
import { issueDevToken } from '../../functions/core/auth.js';
import { provisionLocal, startDevHostProcess, type DevHostProcess } from '../../local/stack.js';
import { testSettings } from '../support/stack.js';
import { assembleAzdPackage, isIgnored, parseIgnoreFile, remoteBuildAccepted, zipPackage, type AzdPackage } from './azd-package.js';

const repoRoot = process.cwd();

/** The environment a child npm gets: ours minus what `npm test` injected (it would point npm back at the repo). */
function cleanEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!/^npm_/i.test(k) && k !== 'INIT_CWD' && k !== 'NODE_PATH') env[k] = v;
  return { ...env, NODE_ENV: '', CI: 'true' };
}
/** Runs npm without blocking the test worker (installs take minutes on a busy machine). */
function npm(cwd: string, args: string[]): Promise<{ status: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn('npm', [...args, '--no-audit', '--no-fund'], { cwd, env: cleanEnv() });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out = (out + d.toString()).slice(-20_000)));
    child.stderr.on('data', (d: Buffer) => (out = (out + d.toString()).slice(-20_000)));
    child.on('close', (status) => resolve({ status, out }));
  });
}

describe('.funcignore, read like azd reads it (denormal/go-gitignore)', () => {
  it('anchored names match the whole relative path without FNM_PATHNAME; plain names match the base name', () => {
    const p = parseIgnoreFile('/*\n!/functions/\nnode_modules/\n*.test.ts\n/dist/\n');
    expect(isIgnored(p, 'functions', true)).toBe(false);
    expect(isIgnored(p, 'functions/core/config.ts', false)).toBe(true); // git would keep it; azd drops it
    expect(isIgnored(p, 'node_modules', true)).toBe(true);
    expect(isIgnored(p, 'functions/node_modules', true)).toBe(true);
    expect(isIgnored(p, 'node_modules', false)).toBe(true); // `/*` (a file named node_modules)
    const q = parseIgnoreFile('node_modules/\n*.test.ts\n/dist/\n**/*.map\n');
    expect(isIgnored(q, 'node_modules', false)).toBe(false); // directory patterns match directories only
    expect(isIgnored(q, 'functions/core/x.test.ts', false)).toBe(true);
    expect(isIgnored(q, 'functions/dist', true)).toBe(false);
    expect(isIgnored(q, 'dist', true)).toBe(true);
    expect(isIgnored(q, 'a/b/c.js.map', false)).toBe(true);
  });

  it('refuses remoteBuild like azd when node_modules is not excluded', () => {
    const dir = mkdtempSync(join(tmpdir(), 'funcignore-'));
    try {
      cpSync(join(repoRoot, 'host.json'), join(dir, 'host.json'));
      const lines = readFileSync(join(repoRoot, '.funcignore'), 'utf8').split('\n').filter((l) => !/node_modules/.test(l));
      writeFileSync(join(dir, '.funcignore'), lines.join('\n'));
      expect(remoteBuildAccepted(parseIgnoreFile(lines.join('\n')))).toBe(false);
      expect(() => assembleAzdPackage(dir)).toThrow(/'remoteBuild: true' requires '.funcignore' to exclude node_modules/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('the Functions deployment package', () => {
  let pkg: AzdPackage;
  let appDir: string;
  let host: DevHostProcess | undefined;

  beforeAll(() => {
    pkg = assembleAzdPackage(repoRoot);
    appDir = mkdtempSync(join(tmpdir(), 'lora-router-package-'));
    for (const f of pkg.files) {
      mkdirSync(dirname(join(appDir, f.path)), { recursive: true });
      cpSync(f.source, join(appDir, f.path), { dereference: true });
    }
  });
  afterAll(async () => {
    await host?.stop();
    if (appDir) rmSync(appDir, { recursive: true, force: true });
  });

  it('is what azd accepts and uploads: remote build allowed, no node_modules, no symlink followed, small', () => {
    expect(pkg.remoteBuildAccepted, ".funcignore must exclude node_modules ('remoteBuild: true' requires it)").toBe(true);
    expect(pkg.followedSymlinks).toEqual([]);
    const paths = pkg.files.map((f) => f.path);
    expect(paths.filter((p) => /(^|\/)node_modules(\/|$)/.test(p))).toEqual([]);
    const topLevel = [...new Set(paths.map((p) => p.split('/')[0]))].sort();
    // The app needs exactly these; anything else is tooling the remote build would compile or ship for nothing.
    expect(topLevel).toEqual(['contract', 'dispatch', 'functions', 'host.json', 'package-lock.json', 'package.json', 'scripts', 'tsconfig.base.json', 'tsconfig.functions.json', 'web']);
    expect(paths.filter((p) => /\.test\.ts$|(^|\/)local\.settings\.json$|(^|\/)\.env$/.test(p))).toEqual([]);
    const bytes = pkg.files.reduce((n, f) => n + f.bytes, 0);
    const zipped = zipPackage(pkg).length;
    console.log(`deploy package: ${pkg.files.length} files, ${bytes} bytes, ${zipped} bytes zipped`);
    expect(zipped).toBeLessThan(2 * 1024 * 1024);
  });

  it('declares no dependency on itself or any local path (no `file:`/`link:` self link for azd to follow)', () => {
    const manifest = JSON.parse(readFileSync(join(appDir, 'package.json'), 'utf8')) as Record<string, Record<string, string> | undefined>;
    for (const field of ['dependencies', 'devDependencies', 'optionalDependencies', 'peerDependencies']) {
      for (const [name, spec] of Object.entries(manifest[field] ?? {})) {
        expect(`${field}.${name}=${spec}`).not.toMatch(/=(file:|link:|\.{0,2}\/)/);
        expect(name).not.toBe(manifest.name as unknown as string);
      }
    }
    const lock = JSON.parse(readFileSync(join(appDir, 'package-lock.json'), 'utf8')) as { packages: Record<string, { link?: boolean }> };
    expect(Object.entries(lock.packages).filter(([, v]) => v.link).map(([k]) => k)).toEqual([]);
  });

  it('installs, builds and prunes on its own, as the remote build does', { timeout: 20 * 60_000 }, async () => {
    const install = await npm(appDir, ['ci', '--prefer-offline', '--ignore-scripts']);
    expect(install.status, install.out.slice(-3000)).toBe(0);
    // No link from the package's node_modules back to itself (or anywhere else).
    const modules = join(appDir, 'node_modules');
    const links = readdirSync(modules)
      .flatMap((n) => (n.startsWith('@') ? readdirSync(join(modules, n)).map((m) => `${n}/${m}`) : [n]))
      .filter((n) => lstatSync(join(modules, n)).isSymbolicLink())
      .map((n) => `${n} -> ${readlinkSync(join(modules, n))}`);
    expect(links).toEqual([]);

    for (const script of ['prepare', 'build']) {
      const r = await npm(appDir, ['run', script]);
      expect(r.status, `npm run ${script} in the package:\n${r.out.slice(-3000)}`).toBe(0);
    }
    const built = spawnSync(process.execPath, [join(appDir, 'scripts/build.js'), '--print-project'], { cwd: appDir, encoding: 'utf8' });
    expect(built.stdout.trim()).toBe('tsconfig.functions.json');
    const triggers = readdirSync(join(appDir, 'functions/triggers')).filter((f) => f.endsWith('.ts'));
    const compiled = readdirSync(join(appDir, 'dist/functions/triggers')).filter((f) => f.endsWith('.js'));
    expect(compiled.sort()).toEqual(triggers.map((f) => f.replace(/\.ts$/, '.js')).sort());
    expect(readdirSync(join(appDir, 'dist')).sort()).toEqual(['contract', 'dispatch', 'functions', 'web']);

    const prune = await npm(appDir, ['prune', '--omit=dev', '--prefer-offline', '--ignore-scripts']);
    expect(prune.status, prune.out.slice(-3000)).toBe(0);
    expect(existsSync(join(appDir, 'node_modules/typescript'))).toBe(false);
    // Nothing in the package resolves outside it.
    expect(realpathSync(appDir).startsWith(realpathSync(repoRoot))).toBe(false);
  });

  it('serves the API from that folder alone and passes the smoke (health, auth, SAS upload, submit, assign)', { timeout: 180_000 }, async () => {
    expect(existsSync(join(appDir, 'dist/functions/triggers/health.js')), 'the build step must have run').toBe(true);
    const settings = testSettings();
    await provisionLocal(settings);
    host = await startDevHostProcess(settings, { appRoot: appDir, logLevel: 'warn' });
    // The triggers the host loaded are the package's own files.
    expect(host.output()).toContain(`"triggers":${JSON.stringify(join(appDir, 'dist/functions/triggers'))}`);
    const token = await issueDevToken(settings.AUTH_DEV_SECRET!, 'smoke', 'admin', 900);
    const result = await runSmoke({ api: `${host.url}/api`, token, timeoutMs: 60_000 });
    expect(result.steps.filter((s) => !s.ok), JSON.stringify(result.steps, null, 1) + host.output().slice(-3000)).toEqual([]);
    expect(result.steps.map((s) => s.step)).toEqual(['health', 'auth', 'upload', 'machine', 'assign', 'cleanup']);
  });
});

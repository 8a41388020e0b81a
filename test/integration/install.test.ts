// The GPU-box install exactly as docs/agent-runbook.md ("3. Install the agent") documents it, as an unprivileged
// user into a scratch prefix: git clone → npm ci (its `prepare` builds dist/) → `node $PREFIX/bin/lora-router.js
// --version`, then `agent --check` with the operator's env file, then the agent itself against this test's stack,
// running one job.
//
// Needs root to create (and afterwards remove) a throwaway user with useradd; not root → skipped, loudly. Only the npm
// registry is reachable here, so two things a GPU box downloads come from this machine instead:
// - the packages: npm ci uses a copy of root's npm cache (--prefer-offline);
// - better-sqlite3's prebuilt binary, which prebuild-install fetches from GitHub releases on a real box: the runbook's
//   mirror setting (npm_config_better_sqlite3_binary_host) points at a loopback server that serves the binary this
//   checkout already uses, packed as the release tarball. Compiling it from source instead (the fallback, python3 +
//   make + g++) took most of the ~700 s this test used to need on a 2-core machine.
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, cpSync, existsSync, mkdtempSync, readFileSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { homedir, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ApiClient } from '../../api-client/index.js';
import { getJob, until } from '../support/helpers.js';
import { startTestHost, type TestHost } from '../support/stack.js';

const isRoot = process.getuid?.() === 0;
if (!isRoot) {
  process.stderr.write('\n*** install.test.ts SKIPPED: not root, so no throwaway user can be created with useradd ***\n\n');
}

const user = `lrinst${process.pid}`;
let scratch: string;
let t: TestHost;
let admin: ApiClient;
let tenant: ApiClient;
let mirror: Server;
let mirrorUrl: string;
/** Paths the binary mirror was asked for: proof that prebuild-install took the prebuilt binary. */
const mirrorHits: string[] = [];

/** A plain login PATH with this Node first: nothing of the repository's node_modules/.bin. */
const cleanPath = `${dirname(process.execPath)}:/usr/local/bin:/usr/bin:/bin`;

/** Runs `cmd` as the throwaway user. Asynchronous: this process must keep serving the binary mirror meanwhile. */
function asUser(cmd: string, env: Record<string, string> = {}, timeoutMs = 900_000): Promise<{ status: number | null; out: string }> {
  const envArgs = Object.entries(env).map(([k, v]) => `${k}=${v}`);
  // env -i: nothing of this (root, npm-run) process leaks in, e.g. npm_config_cache=/root/.npm.
  const child = spawn('runuser', ['-u', user, '--', 'env', '-i', `HOME=${scratch}/home`, `PATH=${cleanPath}`, ...envArgs, 'sh', '-c', cmd], {
    cwd: scratch,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  return new Promise((resolve) =>
    child.once('close', (status) => {
      clearTimeout(timer);
      resolve({ status, out });
    }),
  );
}

/**
 * Where the scratch prefix goes: tmpfs (/dev/shm) when it has room, else the temp directory. The install is the same
 * either way; on this machine's disk (ext4 with discard) writing and then deleting node_modules' files took minutes.
 */
function scratchParent(): string {
  try {
    const fs = statfsSync('/dev/shm');
    if (fs.bavail * fs.bsize > 4 * 1024 ** 3) return '/dev/shm';
  } catch {
    // no /dev/shm
  }
  return tmpdir();
}

describe.skipIf(!isRoot)('install as an unprivileged user, the documented way', () => {
  beforeAll(async () => {
    scratch = mkdtempSync(join(scratchParent(), 'lr-install-'));
    chmodSync(scratch, 0o755);
    const add = spawnSync('useradd', ['--system', '--no-create-home', '--home-dir', join(scratch, 'home'), '--shell', '/usr/sbin/nologin', user], { encoding: 'utf8' });
    if (add.status !== 0) throw new Error(`useradd failed: ${add.stderr}`);
    for (const d of ['home', 'prefix', 'etc']) spawnSync('install', ['-d', '-o', user, '-m', '0755', join(scratch, d)]);
    if (existsSync(join(homedir(), '.npm'))) {
      cpSync(join(homedir(), '.npm'), join(scratch, 'home', '.npm'), { recursive: true });
      spawnSync('chown', ['-R', `${user}:`, join(scratch, 'home')]);
    }
    // The release tarball prebuild-install expects: build/Release/better_sqlite3.node, gzipped tar.
    const sqliteDir = join(process.cwd(), 'node_modules', 'better-sqlite3');
    const tarball = join(scratch, 'better-sqlite3-prebuilt.tar.gz');
    const tar = spawnSync('tar', ['-czf', tarball, '-C', sqliteDir, 'build/Release/better_sqlite3.node'], { encoding: 'utf8' });
    if (tar.status !== 0) throw new Error(`tar failed: ${tar.stderr}`);
    const body = readFileSync(tarball);
    mirror = createServer((req, res) => {
      mirrorHits.push(req.url ?? '');
      if (!req.url?.endsWith('.tar.gz')) return void res.writeHead(404).end();
      res.writeHead(200, { 'content-type': 'application/gzip', 'content-length': body.length }).end(body);
    });
    await new Promise<void>((r) => mirror.listen(0, '127.0.0.1', r));
    mirrorUrl = `http://127.0.0.1:${(mirror.address() as AddressInfo).port}`;
    t = await startTestHost({ SCHEDULER_SCHEDULE: '*/1 * * * * *' }, { timers: true });
    admin = await t.as('install-admin', 'admin');
    tenant = await t.as('install-user');
  }, 120_000);
  afterAll(async () => {
    await t?.stop();
    mirror?.closeAllConnections();
    await new Promise((r) => (mirror ? mirror.close(r) : r(undefined)));
    spawnSync('userdel', [user]);
    if (scratch) rmSync(scratch, { recursive: true, force: true });
  }, 300_000);

  it('clone, npm ci (builds), --version, --check, run a job', async () => {
    const prefix = join(scratch, 'prefix', 'lora-router');
    const repo = process.cwd();
    // The commit under test, cloned as the user.
    // The source repository belongs to root: the user's own git config must trust it (safe.directory).
    writeFileSync(join(scratch, 'home', '.gitconfig'), '[safe]\n\tdirectory = *\n');
    spawnSync('chown', [`${user}:`, join(scratch, 'home', '.gitconfig')]);
    // The operator clones from a remote; here a bare copy in the scratch folder stands for it, since the checkout under
    // test may sit in a folder other users cannot enter (a 0700 temp dir).
    const origin = join(scratch, 'origin.git');
    const bare = spawnSync('git', ['clone', '--quiet', '--bare', repo, origin], { encoding: 'utf8' });
    expect(bare.status, bare.stderr).toBe(0);
    spawnSync('chmod', ['-R', 'a+rX', origin]);
    const clone = await asUser(`git clone --quiet ${origin} ${prefix}`);
    expect(clone.status, clone.out).toBe(0);
    const ci = await asUser(`cd ${prefix} && npm ci --prefer-offline --no-audit --no-fund`, {
      npm_config_better_sqlite3_binary_host: mirrorUrl,
      // Only if the prebuilt binary were refused: compile against the installed Node headers (nodejs.org is unreachable).
      npm_config_nodedir: '/usr',
    });
    expect(ci.status, ci.out.slice(-4000)).toBe(0);
    expect(mirrorHits.some((p) => /\/v\d+\.\d+\.\d+\/better-sqlite3-v[\d.]+-node-v\d+-linux-\w+\.tar\.gz$/.test(p)), `mirror hits: ${mirrorHits.join(', ')}`).toBe(true);
    expect(existsSync(join(prefix, 'dist', 'worker-agent', 'src', 'main.js')), 'npm ci built dist/ (prepare)').toBe(true);
    const version = await asUser(`node ${prefix}/bin/lora-router.js --version`);
    expect(version.status, version.out).toBe(0);
    expect(version.out.trim()).toMatch(/^\d+\.\d+\.\d+/);

    const reg = await admin.post<{ token: string }>('machines', { machine_id: 'install-gpu', pool: 'standard', slots: 1 });
    const tokenFile = join(scratch, 'etc', 'machine-token');
    writeFileSync(tokenFile, `${reg.token}\n`, { mode: 0o600 });
    spawnSync('chown', [`${user}:`, tokenFile]);
    const envFile = join(scratch, 'etc', 'agent.env');
    writeFileSync(
      envFile,
      [
        `LORA_ROUTER_API=${t.apiUrl}`,
        'MACHINE_ID=install-gpu',
        'POOL=standard',
        `MACHINE_TOKEN_FILE=${tokenFile}`,
        `CACHE_DIR=${join(scratch, 'home', 'cache')}`,
        'CACHE_BUDGET=64MB',
        'HEARTBEAT_SECONDS=1',
        'DISPATCH_TRANSPORT=storage-queue',
        `LoraStorage='${t.settings.LoraStorage}'`,
        `DISPATCH_QUEUE_PREFIX=${t.settings.DISPATCH_QUEUE_PREFIX}`,
        `EXECUTOR_COMMAND='["${process.execPath}", "${prefix}/dist/worker-agent/src/job-scripts/open-loras.js"]'`,
        // This agent has no CAP_SETUID to switch to a job user (that is covered by agent-job-user.test.ts).
        'EXECUTOR_TRUSTED_SAME_USER=true',
      ].join('\n') + '\n',
    );
    const check = await asUser(`node ${prefix}/bin/lora-router.js agent --env-file ${envFile} --check`);
    expect(check.status, check.out).toBe(0);
    expect(check.out).toMatch(/ok +executor: .*open-loras|ok +executor: .*node/);
    expect(check.out).toMatch(/ok +API: /);

    // Started as the user directly (uid/gid), not through runuser: systemd signals the agent itself, and runuser would
    // answer SIGTERM by killing its child 2 s later ("Session terminated, killing shell... killed"), mid-drain.
    const id = (flag: string) => Number(spawnSync('id', [flag, user], { encoding: 'utf8' }).stdout.trim());
    const agent = spawn('env', ['-i', `HOME=${scratch}/home`, `PATH=${cleanPath}`, 'node', `${prefix}/bin/lora-router.js`, 'agent', '--env-file', envFile], {
      cwd: scratch,
      uid: id('-u'),
      gid: id('-g'),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    agent.stdout.on('data', (d: Buffer) => (out += d.toString()));
    agent.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => agent.once('exit', (code, signal) => r({ code, signal })));
    let failure: unknown;
    try {
      await until('agent ready', () => out.includes('"agent ready"'), 60_000, 200, () => out.slice(-3000));
      const { job_id } = await tenant.post<{ job_id: string }>('jobs', { service_required: 'open-loras', payload: {} });
      const done = await until('job succeeded', async () => ((await getJob(tenant, job_id)).status === 'succeeded' ? getJob(tenant, job_id) : null), 60_000, 250, () => out.slice(-3000));
      expect(done.machine_id).toBe('install-gpu');
    } catch (err) {
      failure = err;
    }
    // `env` exec'd node: the signal reaches the agent, which drains and exits 0.
    agent.kill('SIGTERM');
    const { code, signal } = await exited;
    if (failure) throw failure;
    expect(code, `the agent ended with code ${code}, signal ${signal}`).toBe(0);
    expect(out).toMatch(/"agent stopped"/);
  }, 1_200_000);
});

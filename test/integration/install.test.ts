// The GPU-box install exactly as docs/agent-runbook.md ("3. Install the agent") documents it, as an unprivileged
// user into a scratch prefix: git clone → npm ci → npm run build → `node $PREFIX/bin/lora-router.js --version`, then
// `agent --check` with the operator's env file, then the agent itself against this test's stack, running one job.
//
// Needs root to create (and afterwards remove) a throwaway user with useradd; not root → skipped, loudly. npm ci
// uses a copy of root's npm cache (--prefer-offline: only the npm registry is reachable here) and the installed Node
// headers for the native SQLite module (npm_config_nodedir), since nodejs.org and GitHub are not reachable.
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, cpSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
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

/** A plain login PATH with this Node first: nothing of the repository's node_modules/.bin. */
const cleanPath = `${dirname(process.execPath)}:/usr/local/bin:/usr/bin:/bin`;

function asUser(cmd: string, env: Record<string, string> = {}, timeoutMs = 900_000): { status: number | null; out: string } {
  const envArgs = Object.entries(env).map(([k, v]) => `${k}=${v}`);
  // env -i: nothing of this (root, npm-run) process leaks in, e.g. npm_config_cache=/root/.npm.
  const r = spawnSync('runuser', ['-u', user, '--', 'env', '-i', `HOME=${scratch}/home`, `PATH=${cleanPath}`, ...envArgs, 'sh', '-c', cmd], {
    cwd: scratch,
    encoding: 'utf8',
    timeout: timeoutMs,
  });
  return { status: r.status, out: `${r.stdout}\n${r.stderr}` };
}

describe.skipIf(!isRoot)('install as an unprivileged user, the documented way', () => {
  beforeAll(async () => {
    scratch = mkdtempSync(join(tmpdir(), 'lr-install-'));
    chmodSync(scratch, 0o755);
    const add = spawnSync('useradd', ['--system', '--no-create-home', '--home-dir', join(scratch, 'home'), '--shell', '/usr/sbin/nologin', user], { encoding: 'utf8' });
    if (add.status !== 0) throw new Error(`useradd failed: ${add.stderr}`);
    for (const d of ['home', 'prefix', 'etc']) spawnSync('install', ['-d', '-o', user, '-m', '0755', join(scratch, d)]);
    if (existsSync(join(homedir(), '.npm'))) {
      cpSync(join(homedir(), '.npm'), join(scratch, 'home', '.npm'), { recursive: true });
      spawnSync('chown', ['-R', `${user}:`, join(scratch, 'home')]);
    }
    t = await startTestHost({ SCHEDULER_SCHEDULE: '*/1 * * * * *' }, { timers: true });
    admin = await t.as('install-admin', 'admin');
    tenant = await t.as('install-user');
  }, 120_000);
  afterAll(async () => {
    await t?.stop();
    spawnSync('userdel', [user]);
    if (scratch) rmSync(scratch, { recursive: true, force: true });
  });

  it('clone, npm ci, build, --version, --check, run a job', async () => {
    const prefix = join(scratch, 'prefix', 'lora-router');
    const repo = process.cwd();
    // The commit under test, cloned as the user.
    // The source repository belongs to root: the user's own git config must trust it (safe.directory).
    writeFileSync(join(scratch, 'home', '.gitconfig'), '[safe]\n\tdirectory = *\n');
    spawnSync('chown', [`${user}:`, join(scratch, 'home', '.gitconfig')]);
    const clone = asUser(`git clone --quiet ${repo} ${prefix}`);
    expect(clone.status, clone.out).toBe(0);
    const ci = asUser(`cd ${prefix} && npm ci --prefer-offline --no-audit --no-fund && npm run build`, { npm_config_nodedir: '/usr' });
    expect(ci.status, ci.out.slice(-4000)).toBe(0);
    const version = asUser(`node ${prefix}/bin/lora-router.js --version`);
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
    const check = asUser(`node ${prefix}/bin/lora-router.js agent --env-file ${envFile} --check`);
    expect(check.status, check.out).toBe(0);
    expect(check.out).toMatch(/ok +executor: .*open-loras|ok +executor: .*node/);
    expect(check.out).toMatch(/ok +API: /);

    const agent = spawn('runuser', ['-u', user, '--', 'env', '-i', `HOME=${scratch}/home`, `PATH=${cleanPath}`, 'node', `${prefix}/bin/lora-router.js`, 'agent', '--env-file', envFile], {
      cwd: scratch,
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
    // runuser passes SIGTERM on to the agent (which drains) and then ends by that same signal itself.
    agent.kill('SIGTERM');
    const { code, signal } = await exited;
    if (failure) throw failure;
    expect(code === 0 || signal === 'SIGTERM', `runuser ended with code ${code}, signal ${signal}`).toBe(true);
    expect(out).toMatch(/"agent stopped"/);
  }, 1_200_000);
});

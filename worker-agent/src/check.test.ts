// `lora-router agent --check` on whom jobs run as (EXECUTOR_USER), and the startup refusal of a token file the job
// user could read. Uses the system's `nobody` user (present on Debian/Ubuntu/RHEL) as an existing unprivileged user.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runCheck } from './check.js';
import { jobUserStartupProblem, resolveJobUser } from './executor/job-user.js';

const dir = mkdtempSync(join(tmpdir(), 'agent-check-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const hasNobody = spawnSync('id', ['-u', 'nobody']).status === 0 && process.getuid?.() !== Number(spawnSync('id', ['-u', 'nobody'], { encoding: 'utf8' }).stdout);

const env = {
  LORA_ROUTER_API: 'http://127.0.0.1:9/api', // nothing listens: the API line is only a warning
  MACHINE_ID: 'gpu-01',
  MACHINE_TOKEN: 'tok',
  CACHE_DIR: join(dir, 'cache'),
  STATE_DIR: join(dir, 'state'),
  EXECUTOR_COMMAND: JSON.stringify([process.execPath, '-e', '0']),
  DISPATCH_TRANSPORT: 'storage-queue',
  LoraStorage: 'UseDevelopmentStorage=true',
};
const jobUserLine = (r: Awaited<ReturnType<typeof runCheck>>) => r.lines.find((l) => l.what === 'job user');

describe('--check: the job user', () => {
  it('fails (exit 78) for an EXECUTOR_USER that does not exist', async () => {
    const r = await runCheck({ env: { ...env, EXECUTOR_USER: 'no-such-user-lr' }, fetchTimeoutMs: 500 });
    expect(jobUserLine(r)).toMatchObject({ status: 'fail', detail: expect.stringMatching(/EXECUTOR_USER no-such-user-lr does not exist/) });
    expect(r.code).toBe(78);
  });

  it.skipIf(!hasNobody)('passes for an existing unprivileged user, naming its uid and groups', async () => {
    const r = await runCheck({ env: { ...env, EXECUTOR_USER: 'nobody' }, fetchTimeoutMs: 500 });
    expect(jobUserLine(r)).toMatchObject({ status: 'ok', detail: expect.stringMatching(/^jobs run as nobody \(uid \d+, gid \d+, groups [\d,]+\) through \/.*setpriv$/) });
    expect(r.code).toBe(0);
  });

  it('warns when the box is declared trusted (same user), and the settings fail without either', async () => {
    const trusted = await runCheck({ env: { ...env, EXECUTOR_TRUSTED_SAME_USER: 'true' }, fetchTimeoutMs: 500 });
    expect(jobUserLine(trusted)?.status).toBe('warn');
    const neither = await runCheck({ env, fetchTimeoutMs: 500 });
    expect(neither.code).toBe(78);
    expect(neither.lines.find((l) => l.what === 'settings')?.detail).toMatch(/Missing setting EXECUTOR_USER/);
  });
});

describe.skipIf(!hasNobody)('startup refusal: a token file the job user could read', () => {
  it('refuses a world-readable token file, accepts a 0600 one', () => {
    const user = resolveJobUser('nobody');
    if ('problem' in user) throw new Error(user.problem);
    const token = join(dir, 'machine-token');
    writeFileSync(token, 'tok\n', { mode: 0o644 });
    expect(jobUserStartupProblem(user, [token])).toMatch(/holds the machine token and is readable by EXECUTOR_USER nobody/);
    writeFileSync(join(dir, 'private-token'), 'tok\n', { mode: 0o600 });
    expect(jobUserStartupProblem(user, [join(dir, 'private-token')])).toBeNull();
  });
});

// `lora-router smoke` against the local stack, as a person runs it after a deploy: the real CLI as a child process.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiRequestError } from '../../api-client/index.js';
import { startTestHost, type TestHost } from '../support/stack.js';

const CLI = join(process.cwd(), 'bin/lora-router.js');

function runCli(args: string[]): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, LORA_ROUTER_TOKEN: '' } });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.on('close', (code) => resolve({ code, out }));
  });
}

describe('lora-router smoke', () => {
  let t: TestHost;
  beforeAll(async () => {
    t = await startTestHost();
  });
  afterAll(async () => {
    await t?.stop();
  });

  it('passes every step against a healthy stack and cleans up after itself', async () => {
    const { code, out } = await runCli(['--api', t.apiUrl, 'smoke', '--dev-secret', t.settings.AUTH_DEV_SECRET!, '--timeout', '60']);
    expect(out, out).toContain('smoke passed');
    expect(code).toBe(0);
    for (const step of ['health', 'auth', 'upload', 'machine', 'assign', 'cleanup']) expect(out).toMatch(new RegExp(`^ok\\s+${step}\\s`, 'm'));
    expect(out).toMatch(/blob up .*cosmos up .*transport up/);

    // Cleanup really happened: the job is cancelled, the LoRA and the machine gone.
    const jobId = /(job_[0-9a-z]{26}) assigned on (smoke-[0-9a-f]{8})/.exec(out);
    expect(jobId, out).not.toBeNull();
    // The smoke's token has subject `smoke`: look with the same tenant (another tenant's ids are 404 anyway).
    const admin = await t.as('smoke', 'admin');
    const job = await admin.get<{ status: string; machine_id: string }>(`jobs/${jobId![1]}`);
    expect(job.status).toBe('cancelled');
    const loraId = /^ok\s+upload\s+(\S+) ready via sas/m.exec(out)![1]!;
    await expect(admin.get(`user-loras/${loraId}`)).rejects.toMatchObject({ status: 404 } satisfies Partial<ApiRequestError>);
    await expect(admin.get(`machines/${jobId![2]}`)).rejects.toMatchObject({ status: 404 } satisfies Partial<ApiRequestError>);
  });

  it('fails at the auth step with a token the API does not accept', async () => {
    const { code, out } = await runCli(['--api', t.apiUrl, '--token', 'not-a-token', 'smoke']);
    expect(out).toMatch(/^ok\s+health\s/m);
    expect(out).toMatch(/^FAIL\s+auth\s+the token was refused/m);
    expect(out).toContain('smoke FAILED');
    expect(code).toBe(1);
  });

  it('fails at the health step when nothing answers', async () => {
    const { code, out } = await runCli(['--api', 'http://127.0.0.1:9/api', 'smoke', '--dev-secret', t.settings.AUTH_DEV_SECRET!]);
    expect(out).toMatch(/^FAIL\s+health\s/m);
    expect(code).toBe(1);
  });
});

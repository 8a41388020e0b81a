// The bundled job script keeps its demo behaviour (payload-driven sleeps, trace files, forced failures) behind
// --demo: the sample production config runs it without the flag, so a tenant's payload cannot make a machine sleep
// or append to files the agent user can write. Runs the built script as a real child process.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const script = join(process.cwd(), 'dist/worker-agent/src/job-scripts/open-loras.js');
const dir = mkdtempSync(join(tmpdir(), 'open-loras-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function runScript(name: string, payload: Record<string, unknown>, args: string[]) {
  const runDir = join(dir, name);
  const out = join(runDir, 'out');
  spawnSync('mkdir', ['-p', out]);
  const jobFile = join(runDir, 'job.json');
  writeFileSync(jobFile, JSON.stringify({ job_id: name, epoch: 1, attempt: 1, payload, loras: [] }));
  const r = spawnSync(process.execPath, [script, ...args], { env: { PATH: process.env.PATH, LORA_ROUTER_JOB_FILE: jobFile, LORA_ROUTER_OUTPUT_DIR: out }, encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, stdout: r.stdout, result: existsSync(join(out, 'result.json')) ? JSON.parse(readFileSync(join(out, 'result.json'), 'utf8')) : null };
}

describe('open-loras job script', () => {
  it('ignores demo payload fields without --demo', () => {
    const trace = join(dir, 'victim.log');
    const r = runScript('prod', { trace_file: trace, sleep_ms: 3_600_000, lines: 3, fail: 'x', ignore_sigterm: true }, []);
    expect(r.status).toBe(0);
    expect(existsSync(trace)).toBe(false);
    expect(r.stdout).not.toContain('open-loras: line 1');
    expect(r.result).toMatchObject({ slept_ms: 0 });
  });

  it('honours them with --demo (local fleet, demo, tests)', () => {
    const trace = join(dir, 'trace.log');
    const r = runScript('demo', { trace_file: trace, sleep_ms: 100, lines: 2 }, ['--demo']);
    expect(r.status).toBe(0);
    expect(readFileSync(trace, 'utf8')).toMatch(/ start\n.* opened\n.* done\n$/);
    expect(r.stdout).toContain('open-loras: line 2');
    expect(r.result).toMatchObject({ slept_ms: 100 });
  });
});

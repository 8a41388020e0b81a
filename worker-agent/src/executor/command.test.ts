// The command executor with real child processes: lines, progress, result.json, exit codes, cancel (SIGTERM, then
// SIGKILL after the grace period), and nothing left running in the job's process group.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CommandExecutor, jobBaseEnv, parseProgressLine } from './command.js';
import type { ExecutorJob } from './types.js';

const dir = mkdtempSync(join(tmpdir(), 'executor-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;

function job(payload: Record<string, unknown> = {}): ExecutorJob {
  return {
    jobId: `job_${String(++n).padStart(26, '0')}`,
    epoch: 1,
    attempt: 1,
    serviceRequired: 'test',
    payload,
    loras: [{ kind: 'user', key: 'lora_x', path: '/cache/loras/user/lora_x.safetensors', sha256: 'a'.repeat(64), size_bytes: 1 }],
    runDir: join(dir, `run-${n}`),
    outputDir: join(dir, `run-${n}`, 'output'),
  };
}

function run(script: string, graceMs = 300, payload: Record<string, unknown> = {}) {
  const ex = new CommandExecutor({ command: process.execPath, args: ['-e', script], cancelGraceMs: graceMs, baseEnv: { PATH: process.env.PATH, MACHINE_TOKEN: 'secret', LoraStorage: 'cs' } });
  const lines: [string, string][] = [];
  const progress: number[] = [];
  const j = job(payload);
  const execution = ex.start(j, { log: (s, l) => lines.push([s, l]), progress: (p) => progress.push(p) });
  return { execution, lines, progress, job: j };
}

describe('CommandExecutor', () => {
  it('streams stdout/stderr lines and progress, hands over the job file, and reads result.json', async () => {
    const r = run(`
      const fs = require('fs'), path = require('path');
      const job = JSON.parse(fs.readFileSync(process.env.LORA_ROUTER_JOB_FILE, 'utf8'));
      console.log('hello ' + job.loras[0].key + ' ' + process.env.LORA_ROUTER_LORA_PATHS);
      console.log('::progress 50% half');
      console.error('warn line');
      console.log('secret=' + (process.env.MACHINE_TOKEN ?? 'none') + ',' + (process.env.LoraStorage ?? 'none'));
      fs.writeFileSync(path.join(process.env.LORA_ROUTER_OUTPUT_DIR, 'result.json'), JSON.stringify({ ok: job.payload.x }));
    `, 300, { x: 42 });
    const out = await r.execution.done;
    expect(out).toEqual({ status: 'succeeded', result: { ok: 42 } });
    expect(r.lines).toContainEqual(['stdout', 'hello lora_x /cache/loras/user/lora_x.safetensors']);
    expect(r.lines).toContainEqual(['stderr', 'warn line']);
    expect(r.lines).toContainEqual(['stdout', 'secret=none,none']);
    expect(r.progress).toEqual([0.5]);
    expect(JSON.parse(readFileSync(join(r.job.runDir, 'job.json'), 'utf8')).payload).toEqual({ x: 42 });
  });

  it('maps exit codes: non-zero → failed with the stderr tail, 75 → retryable', async () => {
    const a = await run(`console.error('it broke'); process.exit(3)`).execution.done;
    expect(a).toMatchObject({ status: 'failed', retryable: false, exitCode: 3 });
    expect(a.status === 'failed' && a.reason).toBe('exit code 3: it broke');
    const b = await run(`process.exit(75)`).execution.done;
    expect(b).toMatchObject({ status: 'failed', retryable: true, exitCode: 75 });
  });

  it('cancel: SIGTERM first; a job that ignores it is SIGKILLed after the grace period, with its children', async () => {
    const r = run(`
      process.on('SIGTERM', () => console.log('got SIGTERM'));
      const child = require('child_process').spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
      console.log('child ' + child.pid);
      setInterval(() => {}, 1000);
    `, 400);
    const childLine = await waitFor(() => r.lines.find(([, l]) => l.startsWith('child '))?.[1]);
    const grandchild = Number(childLine.split(' ')[1]);
    const t0 = Date.now();
    r.execution.cancel('test cancel');
    const out = await r.execution.done;
    const took = Date.now() - t0;
    expect(out).toEqual({ status: 'cancelled', reason: 'test cancel', forced: true });
    expect(r.lines).toContainEqual(['stdout', 'got SIGTERM']);
    expect(took).toBeGreaterThanOrEqual(350);
    expect(alive(grandchild)).toBe(false);
  });

  it('cancel: a job that exits on SIGTERM is not SIGKILLed', async () => {
    const r = run(`process.on('SIGTERM', () => { console.log('bye'); process.exit(0); }); console.log('up'); setInterval(() => {}, 1000);`, 5000);
    await waitFor(() => r.lines.find(([, l]) => l === 'up'));
    r.execution.cancel('stop');
    expect(await r.execution.done).toEqual({ status: 'cancelled', reason: 'stop', forced: false });
  });

  it('a program that cannot start is the machine\'s failure (infrastructure), and preflight says why', async () => {
    const ex = new CommandExecutor({ command: join(dir, 'no-such-program'), args: [], cancelGraceMs: 100 });
    const out = await ex.start(job(), { log: () => undefined, progress: () => undefined }).done;
    expect(out).toMatchObject({ status: 'failed', retryable: true, infrastructure: true });
    expect(ex.preflight()).toMatch(/no-such-program does not exist/);
    expect(new CommandExecutor({ command: 'node', args: [], cancelGraceMs: 100 }).preflight()).toBeNull();
  });

  it('passes only the allow-listed environment and parses progress lines', () => {
    expect(Object.keys(jobBaseEnv({ PATH: '/bin', MACHINE_TOKEN: 'x', ServiceBus__clientId: 'y', AZURE_CLIENT_SECRET: 'z', CREDENTIALS_DIRECTORY: '/c' }))).toEqual(['PATH']);
    // Names no deny-list foresaw do not pass either; GPU selection and locale do; HOME only when the job is the agent's user.
    const agentEnv = { PATH: '/bin', MY_VENDOR_APIKEY: 'k', OTEL_EXPORTER_OTLP_HEADERS: 'h', CUDA_VISIBLE_DEVICES: '0', LANG: 'C.UTF-8', HOME: '/var/lib/x' };
    expect(Object.keys(jobBaseEnv(agentEnv)).sort()).toEqual(['CUDA_VISIBLE_DEVICES', 'HOME', 'LANG', 'PATH']);
    expect(Object.keys(jobBaseEnv(agentEnv, false)).sort()).toEqual(['CUDA_VISIBLE_DEVICES', 'LANG', 'PATH']);
    expect(parseProgressLine('::progress 0.25 step 1')).toEqual({ fraction: 0.25, message: 'step 1' });
    expect(parseProgressLine('::progress 150%')).toEqual({ fraction: 1 });
    expect(parseProgressLine('progress 1')).toBeUndefined();
  });
});

async function waitFor<T>(fn: () => T | undefined, ms = 10_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 20));
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

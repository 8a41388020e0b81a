// Every executor from createExecutor stops a job at EXECUTOR_MAX_RUN_SECONDS and fails it with a reason naming the
// limit. Real child processes.
import { describe, expect, it } from 'vitest';
import { createExecutor } from './index.js';
import type { ExecutionSink } from './types.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const sink = (lines: string[]): ExecutionSink => ({ log: (_s, l) => lines.push(l), progress: () => {} });

function run(script: string, maxRunMs: number) {
  const dir = mkdtempSync(join(tmpdir(), 'run-limit-'));
  const ex = createExecutor({ kind: 'command', command: process.execPath, args: ['-e', script] }, { cancelGraceMs: 200, maxRunMs });
  const lines: string[] = [];
  const execution = ex.start({ jobId: 'j1', epoch: 1, attempt: 1, serviceRequired: 'x', payload: {}, loras: [], runDir: dir, outputDir: join(dir, 'output') }, sink(lines));
  return { lines, done: execution.done.finally(() => rmSync(dir, { recursive: true, force: true })), execution };
}

describe('maximum run time', () => {
  it('stops a job that runs forever and fails it, naming the limit', async () => {
    const { done, lines } = run('setInterval(() => {}, 1000)', 300);
    const outcome = await done;
    expect(outcome).toMatchObject({ status: 'failed', retryable: false });
    expect(outcome.status === 'failed' && outcome.reason).toMatch(/maximum run time of 0 s \(EXECUTOR_MAX_RUN_SECONDS\)/);
    expect(lines.some((l) => /maximum run time/.test(l))).toBe(true);
  });

  it('forces a job that ignores SIGTERM', async () => {
    // Long enough for node to install its SIGTERM handler first, even on a loaded machine.
    const { done } = run("process.on('SIGTERM', () => {}); setInterval(() => {}, 1000)", 3000);
    expect(await done).toMatchObject({ status: 'failed', retryable: false, signal: 'SIGKILL' });
  });

  it('leaves quick jobs and cancels alone', async () => {
    expect(await run('process.exit(0)', 60_000).done).toMatchObject({ status: 'succeeded' });
    const r = run('setInterval(() => {}, 1000)', 60_000);
    r.execution.cancel('user asked');
    expect(await r.done).toMatchObject({ status: 'cancelled', reason: 'user asked' });
  });
});

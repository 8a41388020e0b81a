// Nothing of the local stack outlives its owner: when one emulator cannot start, startEmulators stops the other one
// (before the fix cosmos-server kept running after Azurite failed), and an owner killed outright leaves no emulator.
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { pathToFileURL } from 'node:url';
import { expect, it } from 'vitest';
import { until } from '../test/support/helpers.js';
import { startEmulators } from './stack.js';

const childrenOfThisProcess = (): string[] =>
  execFileSync('ps', ['-o', 'pid=,args=', '--ppid', String(process.pid)], { encoding: 'utf8' })
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.includes(' ps -o '));

it('stops cosmos-server when Azurite fails to start', async () => {
  const stateDir = mkdtempSync(join(tmpdir(), 'emulators-'));
  try {
    writeFileSync(join(stateDir, 'azurite'), 'a file where Azurite wants its folder');
    await expect(startEmulators({ stateDir, freePorts: true })).rejects.toThrow();
    // Before the fix the rejection came at once while cosmos-server went on starting: give it time to show up.
    await new Promise((r) => setTimeout(r, 3_000));
    expect(childrenOfThisProcess().filter((l) => /cosmos/i.test(l))).toEqual([]);
  } finally {
    rmSync(stateDir, { recursive: true, force: true });
  }
});

it('emulators end themselves when the process that started them is killed (SIGKILL: no teardown runs)', async () => {
  const stateDir = mkdtempSync(join(tmpdir(), 'emulators-'));
  const stack = pathToFileURL(join(process.cwd(), 'dist/local/stack.js')).href;
  const owner = spawn(process.execPath, ['-e', `import(${JSON.stringify(stack)}).then(async (m) => {
    const e = await m.startEmulators({ stateDir: ${JSON.stringify(stateDir)}, freePorts: true });
    console.log(JSON.stringify([e.azurite.pid, e.cosmos.pid]));
    setInterval(() => {}, 1000);
  })`], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    const [line] = (await once(createInterface({ input: owner.stdout! }), 'line')) as [string];
    const pids = JSON.parse(line) as number[];
    expect(pids.every(alive)).toBe(true);
    owner.kill('SIGKILL');
    await until('both emulators gone', () => !pids.some(alive), 30_000);
  } finally {
    owner.kill('SIGKILL');
    rmSync(stateDir, { recursive: true, force: true });
  }
});

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

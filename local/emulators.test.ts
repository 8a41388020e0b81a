// When one emulator cannot start, startEmulators stops the other one: nothing is left running (seen before the fix:
// cosmos-server kept running after Azurite failed).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, it } from 'vitest';
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

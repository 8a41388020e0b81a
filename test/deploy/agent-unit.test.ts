// The agent's systemd unit, and each identity drop-in next to it, through `systemd-analyze verify`: no warnings.
// .ci/run installs Debian's systemd package when systemd-analyze is missing. Where it still cannot run, the test is
// skipped with the reason printed (never silently).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const root = process.cwd();
const UNIT = join(root, 'worker-agent/lora-router-agent.service');
const DROP_INS = join(root, 'worker-agent/systemd');

function whyNot(): string | undefined {
  const r = spawnSync('systemd-analyze', ['--version'], { encoding: 'utf8' });
  if (r.error) return `systemd-analyze is not installed (${(r.error as NodeJS.ErrnoException).code}); .ci/run installs Debian's systemd package`;
  if (r.status !== 0) return `systemd-analyze --version failed: ${r.stderr.trim()}`;
  return undefined;
}
const reason = whyNot();
if (reason) console.warn(`SKIPPED systemd-analyze verify: ${reason}`);

const dir = mkdtempSync(join(tmpdir(), 'agent-unit-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Copies the unit (and optionally a drop-in's text) to a fresh folder and verifies it; returns all it printed. */
function verify(dropIn?: string): { status: number | null; output: string } {
  const d = mkdtempSync(join(dir, 'u-'));
  let unit = readFileSync(UNIT, 'utf8');
  // verify checks that ExecStart's program exists. The runbook installs Node as /usr/bin/node; where this machine's
  // node lives elsewhere, the copy points at it (and says so), so the check still runs on everything else.
  if (!existsSync('/usr/bin/node')) {
    console.warn(`note: /usr/bin/node is missing here; verifying with ExecStart=${process.execPath}`);
    unit = unit.replace('ExecStart=/usr/bin/node ', `ExecStart=${process.execPath} `);
  }
  writeFileSync(join(d, 'lora-router-agent.service'), unit);
  if (dropIn) {
    mkdirSync(join(d, 'lora-router-agent.service.d'));
    writeFileSync(join(d, 'lora-router-agent.service.d', 'identity.conf'), dropIn);
  }
  const r = spawnSync('systemd-analyze', ['verify', join(d, 'lora-router-agent.service')], { encoding: 'utf8' });
  return { status: r.status, output: `${r.stdout}${r.stderr}`.trim() };
}

describe.skipIf(reason !== undefined)('systemd-analyze verify', () => {
  it('passes the agent unit with no warnings', () => {
    const r = verify();
    expect(r.output).toBe('');
    expect(r.status).toBe(0);
  });

  it.each(readdirSync(DROP_INS).filter((f) => f.endsWith('.conf')))('passes the unit with the %s drop-in, with no warnings', (file) => {
    const r = verify(readFileSync(join(DROP_INS, file), 'utf8'));
    expect(r.output).toBe('');
    expect(r.status).toBe(0);
  });

  it('is a live check: the misplaced key the unit once had is reported', () => {
    const r = verify('[Service]\nStartLimitIntervalSec=300\n');
    expect(r.output).toMatch(/Unknown key 'StartLimitIntervalSec' in section \[Service\]/);
  });
});

// Jobs run as their own unprivileged user (issue 18, item 4), over the real dev host, a real agent process and a real
// job script: with EXECUTOR_USER the script cannot read the agent's /proc/<pid>/environ (where a development
// MACHINE_TOKEN lives), the token file, nor list the state directory or its outbox, and holds no capability; with
// EXECUTOR_TRUSTED_SAME_USER=true (the behaviour before the fix) the same script reads all of it. An agent with neither
// setting exits 78 before taking work.
//
// Needs root to create (and afterwards remove) a throwaway user with useradd, as install.test.ts does; not root →
// skipped, loudly.
import { spawnSync } from 'node:child_process';
import { chmodSync, cpSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ApiClient } from '../../api-client/index.js';
import { agentStateDir, registerMachine, spawnAgent, type AgentProcess } from '../../local/agents.js';
import { getJob, until } from '../support/helpers.js';
import { startTestHost, type TestHost } from '../support/stack.js';

const isRoot = process.getuid?.() === 0;
if (!isRoot) process.stderr.write('\n*** agent-job-user.test.ts SKIPPED: not root, so no throwaway job user can be created with useradd ***\n\n');

const jobUser = `lrjob${process.pid}`;
let t: TestHost;
let admin: ApiClient;
let tenant: ApiClient;
let work: string;
const agents: AgentProcess[] = [];

// What a hostile job tries. $1: the agent's token file, $2: its state directory.
const PROBE = `#!/bin/sh
can() { "$@" >/dev/null 2>&1 && echo yes || echo no; }
environ=$(can cat /proc/$PPID/environ)
token_in_environ=$(tr '\\0' '\\n' < /proc/$PPID/environ 2>/dev/null | grep -c '^MACHINE_TOKEN=')
token_file=$(can cat "$1")
state_dir=$(can ls "$2")
outbox=$(can ls "$2/outbox")
own_secrets=$(env | grep -c -E '^(MACHINE_TOKEN|LoraStorage|CREDENTIALS_DIRECTORY)=')
uids=$(awk '/^Uid:/{print $2" "$3" "$4" "$5}' /proc/self/status)
caps=$(awk '/^Cap(Prm|Eff|Amb):/{printf "%s ", $2}' /proc/self/status)
printf '{"environ":"%s","token_in_environ":%s,"token_file":"%s","state_dir":"%s","outbox":"%s","own_secrets":%s,"uids":"%s","caps":"%s","uid":%s}' \\
  "$environ" "$token_in_environ" "$token_file" "$state_dir" "$outbox" "$own_secrets" "$uids" "$caps" "$(id -u)" > "$LORA_ROUTER_OUTPUT_DIR/result.json"
`;

/**
 * Drives the real CommandExecutor (a copy of dist/'s executor folder, which imports only Node built-ins and itself, since
 * the checkout may not be readable by other users) as the agent would: one probe job, then one job cancelled mid-run.
 */
const DRIVER = (lib: string): string => `
import { mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { CommandExecutor } from '${lib}/command.js';
import { resolveJobUser } from '${lib}/job-user.js';
const [state, name, probe] = process.argv.slice(2);
const jobUser = resolveJobUser(name);
if ('problem' in jobUser) throw new Error(jobUser.problem);
const sink = { log: (s, l) => process.stderr.write(s + ': ' + l + '\\n'), progress: () => undefined };
const job = (id) => {
  const runDir = join(state, 'runs', id);
  mkdirSync(join(runDir, 'output'), { recursive: true });
  return { jobId: id, epoch: 1, attempt: 1, serviceRequired: 'x', payload: {}, loras: [], runDir, outputDir: join(runDir, 'output') };
};
const probeJob = job('probe');
const probeRun = new CommandExecutor({ command: '/bin/sh', args: [probe, join(state, 'machine-token'), state], cancelGraceMs: 2000, jobUser }).start(probeJob, sink);
const probeOutcome = await probeRun.done;
const owner = statSync(probeJob.runDir).uid;
const sleeper = new CommandExecutor({ command: '/bin/sh', args: ['-c', 'sleep 60'], cancelGraceMs: 20000, jobUser }).start(job('sleeper'), sink);
setTimeout(() => sleeper.cancel('test cancel'), 500);
const cancel = await sleeper.done;
console.log(JSON.stringify({ probe: probeOutcome, owner, agentUid: process.getuid(), cancel }));
`;

interface Probe {
  environ: string;
  token_in_environ: number;
  token_file: string;
  state_dir: string;
  outbox: string;
  own_secrets: number;
  uids: string;
  caps: string;
  uid: number;
}

async function startAgent(machineId: string, env: Record<string, string>): Promise<AgentProcess> {
  const token = await registerMachine(t.apiUrl, admin.options.token!, { machine_id: machineId, pool: 'standard', slots: 1 });
  const dir = join(work, machineId);
  const agent = spawnAgent({
    machineId,
    token,
    pool: 'standard',
    slots: 1,
    apiUrl: t.apiUrl,
    storageConnection: t.settings.LoraStorage!,
    queuePrefix: t.settings.DISPATCH_QUEUE_PREFIX!,
    dir,
    budgetBytes: 1024 * 1024,
    // The development token in the environment: what the review's job read from /proc/$PPID/environ.
    env: { MACHINE_TOKEN: token, EXECUTOR_COMMAND: JSON.stringify(['/bin/sh', join(work, 'probe.sh'), join(dir, 'machine-token'), agentStateDir(dir)]), ...env },
  });
  agents.push(agent);
  return agent;
}

async function runProbe(agent: AgentProcess, machineId: string): Promise<Probe> {
  await agent.ready;
  const { job_id } = await tenant.post<{ job_id: string }>('jobs', { service_required: 'open-loras', payload: {} });
  const done = await until(
    'probe job finished',
    async () => {
      const j = await getJob(tenant, job_id);
      return j.status === 'succeeded' || j.status === 'failed' ? j : null;
    },
    60_000,
    200,
    () => agent.output().slice(-3000),
  );
  expect(done.status, JSON.stringify(done)).toBe('succeeded');
  expect(done.machine_id).toBe(machineId);
  // Drained and gone before the next test's agent takes the pool's work.
  agent.child.kill('SIGTERM');
  await agent.exitStatus;
  return done.result as Probe;
}

describe.skipIf(!isRoot)('jobs run as their own user (EXECUTOR_USER)', () => {
  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), 'lr-jobuser-'));
    chmodSync(work, 0o711); // the job user passes through to its run directory, as under /var/lib
    writeFileSync(join(work, 'probe.sh'), PROBE, { mode: 0o755 });
    const add = spawnSync('useradd', ['--system', '--no-create-home', '--shell', '/usr/sbin/nologin', jobUser], { encoding: 'utf8' });
    if (add.status !== 0) throw new Error(`useradd failed: ${add.stderr}`);
    t = await startTestHost({ SCHEDULER_SCHEDULE: '*/1 * * * * *' }, { timers: true });
    admin = await t.as('jobuser-admin', 'admin');
    tenant = await t.as('jobuser-tenant');
  }, 120_000);
  afterAll(async () => {
    for (const a of agents) {
      if (a.child.exitCode === null && a.child.signalCode === null) a.child.kill('SIGTERM');
      await a.exitStatus;
    }
    await t?.stop();
    spawnSync('userdel', [jobUser]);
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('as EXECUTOR_USER a job cannot read the agent environ, token file or state dir, and holds no capability', async () => {
    const agent = await startAgent('ju-separate', { EXECUTOR_USER: jobUser });
    const p = await runProbe(agent, 'ju-separate');
    const uid = Number(spawnSync('id', ['-u', jobUser], { encoding: 'utf8' }).stdout.trim());
    expect(p.uid).toBe(uid);
    expect(p.uids).toBe(`${uid} ${uid} ${uid} ${uid}`); // real, effective, saved, fs: no way back
    expect(p.caps.trim().split(' ')).toEqual(['0000000000000000', '0000000000000000', '0000000000000000']);
    expect(p).toMatchObject({ environ: 'no', token_in_environ: 0, token_file: 'no', state_dir: 'no', outbox: 'no', own_secrets: 0 });
    // The run directory went back to the agent and was removed.
    expect(readdirSync(join(agentStateDir(join(work, 'ju-separate')), 'runs'))).toEqual([]);
  }, 120_000);

  it('control (the behaviour before the fix): as the agent own user the same job reads all of it', async () => {
    const agent = await startAgent('ju-same', { EXECUTOR_TRUSTED_SAME_USER: 'true' });
    const p = await runProbe(agent, 'ju-same');
    expect(p.uid).toBe(0);
    expect(p).toMatchObject({ environ: 'yes', token_in_environ: 1, token_file: 'yes', state_dir: 'yes', outbox: 'yes' });
    // The allow-listed environment holds no secret even for a same-user job.
    expect(p.own_secrets).toBe(0);
  }, 120_000);

  it('an agent with neither EXECUTOR_USER nor EXECUTOR_TRUSTED_SAME_USER=true exits 78 before taking work', async () => {
    const agent = await startAgent('ju-refused', { EXECUTOR_TRUSTED_SAME_USER: 'false' });
    agent.ready.catch(() => undefined);
    expect((await agent.exitStatus).code).toBe(78);
    expect(agent.output()).toMatch(/Missing setting EXECUTOR_USER: jobs must not run as the agent's own user/);
  }, 60_000);

  it('the unit setup: an unprivileged agent holding only the ambient capabilities runs, cancels and takes back a job', async () => {
    // The agent as systemd runs it: its own unprivileged user, AmbientCapabilities=CAP_SETUID CAP_SETGID CAP_KILL
    // CAP_CHOWN (here through setpriv), driving the real CommandExecutor from dist/.
    const agentUser = `lragent${process.pid}`;
    expect(spawnSync('useradd', ['--system', '--no-create-home', '--shell', '/usr/sbin/nologin', agentUser]).status).toBe(0);
    try {
      const state = join(work, 'unit-state');
      mkdirSync(join(state, 'runs'), { recursive: true });
      writeFileSync(join(state, 'machine-token'), 'secret-token\n', { mode: 0o600 });
      spawnSync('chown', ['-R', `${agentUser}:${agentUser}`, state]);
      chmodSync(state, 0o711);
      chmodSync(join(state, 'runs'), 0o711);
      const driver = join(work, 'driver.mjs');
      const lib = join(work, 'executor');
      cpSync(join(process.cwd(), 'dist/worker-agent/src/executor'), lib, { recursive: true });
      writeFileSync(join(lib, 'package.json'), '{"type":"module"}\n');
      spawnSync('chmod', ['-R', 'a+rX', lib]);
      writeFileSync(driver, DRIVER(lib), { mode: 0o644 });
      const r = spawnSync(
        'setpriv',
        [`--reuid=${agentUser}`, `--regid=${agentUser}`, '--clear-groups', '--inh-caps=+setuid,+setgid,+kill,+chown', '--ambient-caps=+setuid,+setgid,+kill,+chown',
          process.execPath, driver, state, jobUser, join(work, 'probe.sh')],
        { encoding: 'utf8', env: { PATH: process.env.PATH, MACHINE_TOKEN: 'secret-token' }, timeout: 60_000 },
      );
      expect(r.status, r.stderr).toBe(0);
      const out = JSON.parse(r.stdout.trim().split('\n').pop()!) as { probe: { status: string; result: Probe }; owner: number; agentUid: number; cancel: { status: string; forced: boolean } };
      expect(out.probe.status, JSON.stringify(out.probe) + r.stderr).toBe('succeeded');
      const p = out.probe.result;
      const uid = Number(spawnSync('id', ['-u', jobUser], { encoding: 'utf8' }).stdout.trim());
      expect(p.uids).toBe(`${uid} ${uid} ${uid} ${uid}`);
      expect(p.caps.trim().split(' ')).toEqual(['0000000000000000', '0000000000000000', '0000000000000000']);
      expect(p).toMatchObject({ environ: 'no', token_in_environ: 0, token_file: 'no', state_dir: 'no', outbox: 'no', own_secrets: 0 });
      expect(out.owner).toBe(out.agentUid); // CAP_CHOWN: the run directory is the agent's again
      expect(out.cancel).toEqual({ status: 'cancelled', reason: 'test cancel', forced: false }); // CAP_KILL: SIGTERM reached the job
    } finally {
      spawnSync('userdel', [agentUser]);
    }
  }, 120_000);

  it('an EXECUTOR_USER that does not exist is a configuration error (exit 78)', async () => {
    const agent = await startAgent('ju-nouser', { EXECUTOR_USER: 'no-such-user-here' });
    agent.ready.catch(() => undefined);
    expect((await agent.exitStatus).code).toBe(78);
    expect(agent.output()).toMatch(/EXECUTOR_USER no-such-user-here does not exist/);
  }, 60_000);
});

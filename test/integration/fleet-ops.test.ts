// Day-2 fleet controls and agent hardening over the real dev host (scheduler timer on), real agent processes and
// Azurite + cosmosdb-server: drain/undrain, detail, delete, evict/pre-warm orders, version skew on the heartbeat,
// unknown pools, a missing executor (never spends an attempt; the machine heals itself), a re-registered agent that
// recovers by re-reading its token file, and a deregistered agent that exits 78.
import { spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiRequestError, type ApiClient } from '../../api-client/index.js';
import type { MachineDetail } from '../../contract/machines.js';
import { jobScriptPath, registerMachine, spawnAgent } from '../../local/agents.js';
import { getJob, until } from '../support/helpers.js';
import { startTestHost, type TestHost } from '../support/stack.js';
import { startTestFleet, type TestFleet } from '../support/test-agents.js';
import { seedRealLora } from './agent.fixtures.js';

let t: TestHost;
let admin: ApiClient;
let user: ApiClient;
let fleet: TestFleet;
let work: string;

beforeAll(async () => {
  t = await startTestHost({ SCHEDULER_SCHEDULE: '*/1 * * * * *', REAPER_SCHEDULE: '*/1 * * * * *', MACHINE_LIVENESS_SECONDS: '6' }, { timers: true });
  admin = await t.as('ops', 'admin');
  user = await t.as('fleet-user');
  work = mkdtempSync(join(tmpdir(), 'fleet-ops-'));
  fleet = await startTestFleet(t, 0, { prefix: 'ops', env: { TOKEN_REFUSED_GRACE_SECONDS: '3' } });
}, 120_000);
afterAll(async () => {
  await fleet?.stop();
  await t?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

async function refusal(p: Promise<unknown>): Promise<ApiRequestError> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ApiRequestError);
  return err as ApiRequestError;
}

const submit = async (pool = 'standard', payload: Record<string, unknown> = {}): Promise<string> =>
  (await user.post<{ job_id: string }>('jobs', { service_required: 'open-loras', pool, payload })).job_id;
const detail = (id: string) => admin.get<MachineDetail>(`machines/${id}`);

/** The real CLI (dist/cli/index.js) against the test host. */
async function cli(client: ApiClient, args: string[]): Promise<{ code: number | null; out: string }> {
  const child = spawn(process.execPath, [join(process.cwd(), 'dist/cli/index.js'), '--api', t.apiUrl, '--token', client.options.token!, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const code = await new Promise<number | null>((r) => child.once('close', r));
  return { code, out };
}

describe('bad input to the new endpoints: clear 4xx JSON', () => {
  it('unknown machines are 404, bad bodies 400, users 403, unknown pools 422 listing the known ones', async () => {
    expect((await refusal(admin.get('machines/no-such-machine'))).status).toBe(404);
    expect((await refusal(admin.get('machines/NOT_AN_ID'))).status).toBe(404);
    expect((await refusal(admin.post('machines/no-such-machine/drain'))).status).toBe(404);
    expect((await refusal(admin.post('machines/no-such-machine/undrain'))).status).toBe(404);
    expect((await refusal(admin.delete('machines/no-such-machine'))).status).toBe(404);
    const badEvict = await refusal(admin.post('machines/evict', { lora: { kind: 'shared', key: 'not a file' } }));
    expect(badEvict.status).toBe(400);
    expect(badEvict.code).toBe('invalid_request');
    expect((await refusal(admin.post('machines/evict', { lora: { kind: 'user', key: 'x' }, extra: 1 }))).status).toBe(400);
    expect((await refusal(admin.post('machines/prewarm', { lora: { kind: 'shared', key: 'a.safetensors' }, machine_ids: [] }))).status).toBe(400);
    expect((await refusal(admin.post('machines/prewarm', { lora: { kind: 'shared', key: 'nope.safetensors' }, machine_ids: ['ops-x'] }))).status).toBe(404);
    expect((await refusal(user.get('machines/ops-x'))).status).toBe(403);
    expect((await refusal(user.post('machines/ops-x/drain'))).status).toBe(403);
    const pool = await refusal(submit('no-such-pool'));
    expect(pool.status).toBe(422);
    expect(pool.code).toBe('unknown_pool');
    expect(pool.message).toMatch(/known pools: .*standard/);
  });
});

describe('version skew on the heartbeat', () => {
  it('a newer agent (extra fields) and an older agent (no optional fields) are both accepted', async () => {
    const reg = await admin.post<{ token: string }>('machines', { machine_id: 'ops-skew', pool: 'standard', slots: 2 });
    const machine = admin.withToken(reg.token);
    const base = {
      pool: 'standard',
      slots: 1,
      running_jobs: [],
      cached_loras: { user: [], shared: [] },
      cache: { budget_bytes: 1, used_bytes: 0, free_disk_bytes: 1, counters: { hits: 0, misses: 0, downloads: 0, bytes_downloaded: 0, evictions: 0, thrash: 0 } },
    };
    const older = await machine.post<{ ok: boolean; stop_jobs: unknown[] }>('machines/ops-skew/heartbeat', base);
    expect(older.ok).toBe(true);
    expect((await detail('ops-skew')).cache_entries).toBeNull(); // an older agent reports no sizes: said, not faked
    const entry = { kind: 'shared', key: 'a.safetensors', size_bytes: 10, last_used_at: '2026-01-01T00:00:00.000Z', pinned: false, in_use: 0 };
    const newer = await machine.post<{ ok: boolean }>('machines/ops-skew/heartbeat', {
      ...base,
      agent_version: '9.9.9',
      gpu_temperature_c: 61,
      future: { nested: true },
      cache_entries: [{ ...entry, heat: 3 }],
    });
    expect(newer.ok).toBe(true);
    const d = await detail('ops-skew');
    expect(d.agent_version).toBe('9.9.9');
    expect(d.cache_entries).toEqual([entry]);
    // The agent's SLOTS above the admin's limit is said out loud, and the limit holds.
    const over = await machine.post<{ warnings?: string[] }>('machines/ops-skew/heartbeat', { ...base, slots: 8 });
    expect(over.warnings?.[0]).toMatch(/SLOTS=8 is above this machine's admin limit of 2/);
    expect((await detail('ops-skew')).slots).toBe(2);
    await admin.delete('machines/ops-skew');
  });
});

describe('drain, undrain, detail, delete', () => {
  it('a drained machine gets no new jobs while its agent keeps running; undrained, it runs them', async () => {
    const a = await fleet.add('ops-drain');
    expect((await admin.post<{ admin_drained: boolean }>('machines/ops-drain/drain')).admin_drained).toBe(true);
    const pools = await admin.get<{ pools: { pool: string; machines_live: number }[] }>('pools');
    expect(pools.pools.find((p) => p.pool === 'standard')?.machines_live ?? 0).toBe(0);
    const job = await submit();
    // Several scheduler passes (1 s) and heartbeats go by: still pending, agent still alive.
    await until('a few heartbeats', async () => {
      const d = await detail('ops-drain');
      return d.live && d.admin_drained && Date.parse(d.last_heartbeat_at!) > Date.now() - 2_000 ? d : null;
    });
    await new Promise((r) => setTimeout(r, 3_000));
    const waiting = await getJob(user, job);
    expect(waiting.status).toBe('pending');
    expect(a.alive).toBe(true);
    // Why it waits is on the job, written once when the reason appeared (not once per 1 s pass).
    expect(waiting.waits.map((w) => w.reason)).toEqual(['no_machine_in_pool']);
    const explained = await cli(user, ['job', job, '--explain']);
    expect(explained.code, explained.out).toBe(0);
    expect(explained.out).toMatch(/waiting: no live, undrained, healthy machine in its pool/);
    const listed = await cli(admin, ['machines']);
    expect(listed.out).toMatch(/ops-drain +standard +drained /);
    const poolTable = await cli(admin, ['pools']);
    expect(poolTable.out).toMatch(/^POOL +MACHINES .*\nstandard +0 +\d+\/\d+ +\d+ +/);
    const metrics = await cli(admin, ['metrics', '--hours', '1']);
    expect(metrics.code, metrics.out).toBe(0);
    expect(metrics.out).toMatch(/^last 1 h\njobs: .*\nassignments: .*\ncache: hit rate /);
    await admin.post('machines/ops-drain/undrain');
    const done = await until('job succeeded after undrain', async () => ((await getJob(user, job)).status === 'succeeded' ? getJob(user, job) : null), 30_000, 200, () => fleet.logs());
    expect(done.machine_id).toBe('ops-drain');
    expect(done.waits.map((w) => w.reason)).toEqual(['no_machine_in_pool']);
    expect(done.runners_up).toEqual([]); // the only machine of its pool
    const d = await detail('ops-drain');
    expect(d.admin_drained).toBe(false);
    expect(d.cache?.budget_bytes).toBeGreaterThan(0);
    expect(d.agent_version).toMatch(/\d+\.\d+\.\d+/);
    expect(d.jobs).toEqual([]);

    // Deregistering: the agent's token stops working; it exits 78 instead of retrying forever.
    await admin.delete('machines/ops-drain');
    expect((await refusal(admin.get('machines/ops-drain'))).status).toBe(404);
    const exit = await a.proc!.exitStatus;
    expect(exit.code).toBe(78);
    expect(a.output()).toMatch(/refuses this machine token/);
  }, 90_000);
});

describe('infrastructure failures never spend an attempt', () => {
  it('an agent whose executor is missing at startup exits 78 before taking work', async () => {
    const token = await registerMachine(t.apiUrl, admin.options.token!, { machine_id: 'ops-noexec', pool: 'standard', slots: 1 });
    const agent = spawnAgent({
      machineId: 'ops-noexec',
      token,
      pool: 'standard',
      slots: 1,
      apiUrl: t.apiUrl,
      storageConnection: t.settings.LoraStorage!,
      queuePrefix: t.settings.DISPATCH_QUEUE_PREFIX!,
      dir: join(work, 'ops-noexec'),
      budgetBytes: 1024 * 1024,
      env: { EXECUTOR_COMMAND: join(work, 'does-not-exist') },
    });
    agent.ready.catch(() => undefined);
    expect((await agent.exitStatus).code).toBe(78);
    expect(agent.output()).toMatch(/EXECUTOR_COMMAND: .*does-not-exist does not exist/);
    expect((await detail('ops-noexec')).last_heartbeat_at).toBeNull();
    await admin.delete('machines/ops-noexec');
  }, 60_000);

  it('an executor that vanishes: the job is handed back with its attempt unspent, the machine is unhealthy, then heals', async () => {
    const wrapper = join(work, 'run-job.sh');
    writeFileSync(wrapper, `#!/bin/sh\nexec "${process.execPath}" "${jobScriptPath()}" "$@"\n`);
    chmodSync(wrapper, 0o755);
    await fleet.add('ops-vanish', { env: { EXECUTOR_COMMAND: wrapper } });
    renameSync(wrapper, `${wrapper}.away`);
    const job = await submit();
    const unhealthy = await until('machine reported unhealthy', async () => {
      const d = await detail('ops-vanish');
      return d.unhealthy_reason ? d : null;
    }, 30_000, 200, () => fleet.logs());
    expect(unhealthy.unhealthy_reason).toMatch(/run-job\.sh/);
    // The agent reports the hand-back only once the heartbeat saying it is unhealthy has landed (so the job cannot be
    // placed straight back on it): the report follows that heartbeat.
    const handedBack = await until('hand-back recorded', async () => {
      const j = await getJob(user, job);
      return j.error ? j : null;
    }, 20_000, 200, () => fleet.logs());
    expect(handedBack.status).toBe('pending');
    expect(handedBack.attempt).toBe(1);
    expect(handedBack.error).toMatch(/handed back by ops-vanish \(attempt 1 not spent\)/);
    renameSync(`${wrapper}.away`, wrapper);
    const done = await until('job succeeded once the executor is back', async () => ((await getJob(user, job)).status === 'succeeded' ? getJob(user, job) : null), 40_000, 200, () => fleet.logs());
    expect(done.attempt).toBe(1);
    expect((await detail('ops-vanish')).unhealthy_reason).toBeNull();
  }, 90_000);
});

describe('a re-registered agent recovers by itself', () => {
  it('re-reads its token file after a 401 and keeps working', async () => {
    const a = await fleet.add('ops-rereg');
    const before = (await detail('ops-rereg')).last_heartbeat_at!;
    const reg = await admin.post<{ token: string; token_version: number }>('machines', { machine_id: 'ops-rereg', pool: 'standard', slots: 1 });
    expect(reg.token_version).toBe(2);
    writeFileSync(join(a.launch.dir, 'machine-token'), `${reg.token}\n`);
    await until('heartbeats with the new token', async () => {
      const d = await detail('ops-rereg');
      return d.last_heartbeat_at! > before && Date.parse(d.last_heartbeat_at!) > Date.now() - 2_000 ? d : null;
    }, 20_000);
    const job = await submit();
    const done = await until('job on the re-registered machine', async () => ((await getJob(user, job)).status === 'succeeded' ? getJob(user, job) : null), 30_000, 200, () => fleet.logs());
    expect(['ops-rereg', 'ops-vanish']).toContain(done.machine_id);
    // Two machines had a free slot: the one not chosen is the runner-up, with its score parts (job --explain).
    const other = done.machine_id === 'ops-rereg' ? 'ops-vanish' : 'ops-rereg';
    expect(done.runners_up.map((r) => r.machine_id)).toEqual([other]);
    const up = done.runners_up[0]!;
    expect(up.score).toBeLessThanOrEqual(done.affinity_score!);
    expect(up.score).toBeCloseTo(Object.values(up.score_breakdown).reduce((x, y) => x + y, 0), 9);
    const explained = await cli(user, ['job', job, '--explain']);
    expect(explained.code, explained.out).toBe(0);
    expect(explained.out).toMatch(new RegExp(`placed on ${done.machine_id} by affinity with score`));
    expect(explained.out).toMatch(new RegExp(`runners-up \\(among the machines the policy scored\\):\\n    ${other} score -?\\d+\\.\\d\\d: `));
    expect(a.alive).toBe(true);
    expect(a.output()).toMatch(/machine token was replaced/);
  }, 90_000);
});

describe('cache orders through the heartbeat answer', () => {
  it('pre-warm fetches a LoRA onto a machine; evict removes it again', async () => {
    const lora = await seedRealLora(t, { owner: 'fleet-user', dataBytes: 64 * 1024 });
    const { key, kind } = lora;
    const r = await admin.post<{ machines: string[] }>('machines/prewarm', { lora: { kind, key }, machine_ids: ['ops-rereg'] });
    expect(r.machines).toEqual(['ops-rereg']);
    const warm = await until('pre-warmed LoRA in the inventory', async () => {
      const d = await detail('ops-rereg');
      return (kind === 'user' ? d.cached.user : d.cached.shared).includes(key) && d.cache_entries?.some((e) => e.key === key) ? d : null;
    }, 30_000, 200, () => fleet.logs());
    // Size and last use per LoRA, from the agent's cache DB through the heartbeat.
    const entry = warm.cache_entries!.find((e) => e.key === key)!;
    expect(entry).toMatchObject({ kind, key, size_bytes: lora.size, pinned: false, in_use: 0 });
    expect(Date.parse(entry.last_used_at)).toBeGreaterThan(Date.now() - 120_000);
    const shown = await cli(admin, ['machine', 'ops-rereg']);
    expect(shown.code, shown.out).toBe(0);
    expect(shown.out).toMatch(/cache .* used of .* budget, free disk \d/);
    expect(shown.out).toMatch(new RegExp(`${kind} +${key} +${lora.size < 1024 ? `${lora.size} bytes` : '\\d+(\\.\\d)? KiB'} +\\d+ s ago`));
    const e = await admin.post<{ machines: string[] }>('machines/evict', { lora: { kind, key } });
    expect(e.machines).toContain('ops-rereg');
    await until('evicted LoRA gone from the inventory', async () => {
      const d = await detail('ops-rereg');
      return !(kind === 'user' ? d.cached.user : d.cached.shared).includes(key) ? d : null;
    }, 30_000, 200, () => fleet.logs());
  }, 60_000);
});

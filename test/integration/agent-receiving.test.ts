// A machine that cannot receive its dispatches stops being assigned work within one heartbeat, and gets work again
// once it can. Real parts: the agent as a child process on the storage-queue transport, the dev Functions host with
// its scheduler timer, Azurite + cosmosdb-server. "Cannot receive" is simulated by DISPATCH_SIMULATE_SESSION_BUSY_FILE
// (local transport only): while the file exists the agent's receiver throws SessionBusyError, exactly as the Service
// Bus receiver does while another receiver (a stale agent, or the broker after a dropped connection) holds the session.
//
// Both machines serve the pool; only `busy` (the real agent) has the job's LoRA cached, so the affinity scoring
// would pick it. While it reports `receiving: false` the job goes to `spare` (a heartbeat-only machine) instead.
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ApiClient } from '../../api-client/index.js';
import { startTestHost, type TestHost } from '../support/stack.js';
import { getJob, machineView, seedRealLora, spawnAgent, until, type AgentProcess, type SeededLora } from './agent.fixtures.js';

const MiB = 1024 * 1024;
/** Waits are generous (not timed assertions): the machine is shared and can be very slow. */
const WAIT = 120_000;
const TENANT = 'receiving-tenant';

let t: TestHost;
let admin: ApiClient;
let user: ApiClient;
let work: string;
let busyFile: string;
let agent: AgentProcess;
let L: SeededLora;
const busy = `gpu-busy-${Date.now().toString(36)}`;
const spare = `gpu-spare-${Date.now().toString(36)}`;
let busyToken: string;
let spareToken: string;
let spareBeats: NodeJS.Timeout | undefined;

async function submit(): Promise<string> {
  return (await user.post<{ job_id: string }>('jobs', { service_required: 'open-loras', payload: { sleep_ms: 50 }, requirements: { loras: [L.requirement] } })).job_id;
}

/** The spare machine: registered and live through plain heartbeats (nobody receives its dispatches). */
const beatSpare = () =>
  fetch(`${t.apiUrl}/machines/${spare}/heartbeat`, {
    method: 'POST',
    headers: { authorization: `Bearer ${spareToken}`, 'content-type': 'application/json' },
    body: JSON.stringify({
      pool: 'standard',
      slots: 1,
      running_jobs: [],
      cached_loras: { user: [], shared: [] },
      cache: { budget_bytes: 64 * MiB, used_bytes: 0, free_disk_bytes: 1024 * MiB, counters: { hits: 0, misses: 0, downloads: 0, bytes_downloaded: 0, evictions: 0, thrash: 0 } },
      draining: false,
      agent_version: 'test-spare',
    }),
  });

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'agent-recv-'));
  busyFile = join(work, 'session-busy');
  mkdirSync(join(work, 'agent'));
  t = await startTestHost({ SCHEDULER_SCHEDULE: '* * * * * *', REAPER_SCHEDULE: '* * * * * *', SCHEDULER_POLICY: 'adr010', CLAIM_TIMEOUT_SECONDS: '120' }, { timers: true });
  admin = await t.as('ops', 'admin');
  user = await t.as(TENANT);
  busyToken = (await admin.post<{ token: string }>('machines', { machine_id: busy, pool: 'standard', slots: 1 })).token;
  spareToken = (await admin.post<{ token: string }>('machines', { machine_id: spare, pool: 'standard', slots: 1 })).token;
  L = await seedRealLora(t, { owner: TENANT, dataBytes: 1 * MiB, seed: 11 });
  agent = spawnAgent({
    machineId: busy,
    token: busyToken,
    pool: 'standard',
    slots: 1,
    apiUrl: t.apiUrl,
    storageConnection: t.settings.LoraStorage!,
    queuePrefix: t.settings.DISPATCH_QUEUE_PREFIX!,
    dir: join(work, 'agent'),
    budgetBytes: 64 * MiB,
    heartbeatSeconds: 1,
    logLevel: 'debug',
    env: { DISPATCH_SIMULATE_SESSION_BUSY_FILE: busyFile },
  });
});

afterAll(async () => {
  clearInterval(spareBeats);
  await agent?.stop();
  await t?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('a machine that cannot receive (local transport, simulated busy session)', () => {
  it('gets work while it receives, none from the first heartbeat that says it cannot, and work again once it can', async () => {
    // 1. Receiving: the job runs here, and the machine now caches L.
    await agent.ready;
    await until('agent live and receiving', async () => {
      const v = await machineView(admin, busy);
      return v.live && v.receiving;
    }, WAIT);
    const first = await submit();
    await until('first job done', async () => (await getJob(user, first)).status === 'succeeded', WAIT);
    expect((await getJob(user, first)).machine_id).toBe(busy);
    await until('L in the heartbeat', async () => (await machineView(admin, busy)).cached_user_loras === 1, WAIT);

    // 2. The session is taken: the agent says so in its log and in its very next heartbeat.
    writeFileSync(busyFile, 'held by another receiver\n');
    await until('session busy logged', () => agent.hasLog('session busy: cannot receive dispatches'), WAIT);
    const firstBusy = agent.logs.findIndex((l) => l.msg === 'session busy: cannot receive dispatches');
    // (A heartbeat already in flight carries the old state; the agent sends another as soon as it is back.)
    await until('a heartbeat built after it', () => agent.logs.slice(firstBusy).some((l) => l.msg === 'sending heartbeat'), WAIT);
    const nextBeat = agent.logs.slice(firstBusy).find((l) => l.msg === 'sending heartbeat')!;
    expect(nextBeat.receiving).toBe(false);
    await until('the machine shown as not receiving', async () => (await machineView(admin, busy)).receiving === false, WAIT);
    expect((await machineView(admin, busy)).live).toBe(true); // still live: only its dispatches are stopped

    // 3. A job that would score best here (its LoRA is cached here only) goes to the spare machine instead.
    await beatSpare();
    spareBeats = setInterval(() => void beatSpare().catch(() => undefined), 2_000);
    await until('spare live', async () => (await machineView(admin, spare)).live, WAIT);
    const second = await submit();
    const placed = await until('second job assigned', async () => {
      const j = await getJob(user, second);
      return j.machine_id ? j : undefined;
    }, WAIT);
    expect(placed.machine_id).toBe(spare);
    expect(placed.status).toBe('assigned');

    // 4. The session is free again: the agent receives and the next job comes back here (the spare is full now).
    rmSync(busyFile);
    expect(existsSync(busyFile)).toBe(false);
    await until('receiving again', () => agent.hasLog('dispatch session acquired; receiving again'), WAIT);
    await until('the machine shown as receiving', async () => (await machineView(admin, busy)).receiving === true, WAIT);
    const third = await submit();
    await until('third job done', async () => (await getJob(user, third)).status === 'succeeded', WAIT);
    expect((await getJob(user, third)).machine_id).toBe(busy);
    await user.delete(`jobs/${second}`);
  }, 900_000);
});

// End to end through the public HTTP API and real agent processes (the same `lora-router agent` + open-loras job script
// `npm start` runs): upload → job → the agent downloads → the next job with that LoRA lands on the same machine as a
// cache hit; shared LoRAs; cancel of a running job; retry of a failed job.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ApiClient } from '../../api-client/index.js';
import type { MachineView } from '../../contract/machines.js';
import { makeSafetensors } from '../../testkit/safetensors.js';
import { until } from '../support/helpers.js';
import { startTestFleet, type TestFleet } from '../support/test-agents.js';
import { startTestHost, type TestHost } from '../support/stack.js';
import {
  allEvents,
  FAST_SETTINGS,
  sleep,
  submitJob,
  uploadSharedLora,
  uploadUserLora,
  waitJob,
  waitTerminal,
} from './helpers.js';

let t: TestHost;
let fleet: TestFleet;
let alice: ApiClient;
let bob: ApiClient;
let admin: ApiClient;
const t0 = Date.now();

beforeAll(async () => {
  t = await startTestHost({ ...FAST_SETTINGS, SCHEDULER_POLICY: 'affinity' }, { timers: true });
  fleet = await startTestFleet(t, 2, { prefix: 'e2e' });
  alice = await t.as('alice');
  bob = await t.as('bob');
  admin = await t.as('ops', 'admin');
});

afterAll(async () => {
  if (process.env.E2E_DEBUG) console.log(`[e2e] host output:\n${t?.host.output().slice(-6000)}\n${fleet?.logs(3000)}`);
  await fleet?.stop();
  await t?.stop();
  console.log(`[e2e] lifecycle file took ${((Date.now() - t0) / 1000).toFixed(1)} s`);
});

const fileSha = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');

async function machine(id: string): Promise<MachineView> {
  const { machines } = await admin.get<{ machines: MachineView[] }>('machines');
  return machines.find((m) => m.machine_id === id)!;
}

describe('a user LoRA from upload to a cache hit', () => {
  it('downloads on the first job, then routes the next job with that LoRA to the same machine as a hit', async () => {
    const content = makeSafetensors({ dataBytes: 2 * 1024 * 1024, seed: 11 });
    const lora = await uploadUserLora(t, alice, 'alice', content, 'alice-portrait.safetensors');
    console.log(`[e2e] LoRA ${lora.key} (${lora.size} bytes) via ${lora.via}`);
    expect(lora.size).toBe(content.length);

    const first = await submitJob(alice, { user: [lora.key], payload: { verify_sha256: true } });
    const j1 = await waitTerminal(alice, first, 30_000);
    expect(j1.status, JSON.stringify(j1) + fleet.logs()).toBe('succeeded');
    expect(j1.cache.missing_loras).toEqual([lora.key]);
    expect(j1.cache.hit_loras).toEqual([]);
    const m = j1.machine_id!;
    const opened = (j1.result as { opened: { key: string; kind: string; size_bytes: number }[] }).opened;
    expect(opened).toEqual([expect.objectContaining({ key: lora.key, kind: 'user', size_bytes: content.length })]);

    // The file really is in that machine's cache, whole and verified; not on the other one.
    const agent = fleet.byId(m);
    const cached = join(agent.cacheDir, 'loras', 'user', `${lora.key}.safetensors`);
    expect(fileSha(cached)).toBe(lora.sha256);
    const other = fleet.agents.find((a) => a.machineId !== m)!;
    expect(existsSync(join(other.cacheDir, 'loras', 'user', `${lora.key}.safetensors`))).toBe(false);

    // The user sees what happened in the job's events: started with the miss and the bytes downloaded.
    const ev1 = await allEvents(alice, first);
    const started1 = ev1.find((e) => e.type === 'started')!;
    expect(started1.machine_id).toBe(m);
    expect((started1.data.cache as { missing_loras: string[]; bytes_downloaded: number }).bytes_downloaded).toBe(content.length);
    expect(ev1.filter((e) => e.type === 'succeeded')).toHaveLength(1);

    // Once the machine's heartbeat lists the LoRA, the scheduler prefers it.
    await waitFor(async () => {
      const mv = await machine(m);
      return mv.cached_user_loras >= 1 && mv.running_jobs === 0;
    }, 10_000);
    const second = await submitJob(alice, { user: [lora.key], payload: { verify_sha256: true } });
    const j2 = await waitTerminal(alice, second, 30_000);
    expect(j2.status).toBe('succeeded');
    expect(j2.machine_id).toBe(m);
    expect(j2.cache.hit_loras).toEqual([lora.key]);
    expect(j2.cache.missing_loras).toEqual([]);
    expect(j2.affinity_score).toBeGreaterThan(0);
    const started2 = (await allEvents(alice, second)).find((e) => e.type === 'started')!;
    expect((started2.data.cache as { bytes_downloaded: number }).bytes_downloaded).toBe(0);

    // The machine's counters (from its next heartbeat): one download, one hit.
    await waitFor(async () => ((await machine(m)).cache?.counters.hits ?? 0) >= 1, 10_000);
    expect((await machine(m)).cache?.counters.downloads).toBe(1);
    console.log(`[e2e] job1 ${m} miss (${content.length} B downloaded), job2 ${j2.machine_id} hit, score ${j2.affinity_score}`);
  });
});

describe('shared LoRAs', () => {
  it('runs a job that needs a shared LoRA and a user LoRA; the shared file lands under its filename', async () => {
    const sharedContent = makeSafetensors({ dataBytes: 512 * 1024, seed: 21 });
    const filename = `detail-${Date.now().toString(36)}.safetensors`;
    const shared = await uploadSharedLora(t, admin, sharedContent, filename);
    const own = await uploadUserLora(t, bob, 'bob', makeSafetensors({ dataBytes: 256 * 1024, seed: 22 }), 'bob-style.safetensors');

    const id = await submitJob(bob, { user: [own.key], shared: [shared.key], payload: { verify_sha256: true } });
    const j = await waitTerminal(bob, id, 30_000);
    expect(j.status, JSON.stringify(j)).toBe('succeeded');
    expect(j.requirements.loras).toEqual([
      { type: 'user', flat_file_id: own.key },
      { type: 'shared', filename: shared.key },
    ]);
    const opened = (j.result as { opened: { key: string; kind: string }[] }).opened;
    expect(opened.map((o) => `${o.kind}:${o.key}`).sort()).toEqual([`shared:${shared.key}`, `user:${own.key}`].sort());
    const agent = fleet.byId(j.machine_id!);
    expect(fileSha(join(agent.cacheDir, 'loras', 'shared', shared.key))).toBe(shared.sha256);

    // Another user may use the same shared LoRA; bob's own LoRA stays bob's (404 for alice, like a missing one).
    const forAlice = await submitJob(alice, { shared: [shared.key] });
    expect((await waitTerminal(alice, forAlice, 30_000)).status).toBe('succeeded');
    const refused = await alice.raw('POST', 'jobs', {
      body: { service_required: 'image-gen', requirements: { loras: [{ type: 'user', flat_file_id: own.key }] } },
    });
    expect([404, 422]).toContain(refused.status);
  });
});

describe('cancel', () => {
  it('stops a running job on its machine and it stays cancelled', async () => {
    const traceDir = join(fleet.dir, 'traces');
    mkdirSync(traceDir, { recursive: true });
    const trace = join(traceDir, 'cancel.log');
    const id = await submitJob(alice, { payload: { sleep_ms: 60_000, trace_file: trace } });
    const running = await waitJob(alice, id, (j) => j.status === 'running', 20_000);
    await waitFor(async () => existsSync(trace) && readFileSync(trace, 'utf8').includes(' opened'), 10_000);

    const cancelledAt = Date.now();
    const res = await alice.raw('DELETE', `jobs/${id}`);
    expect(res.status).toBe(200);
    expect((await waitTerminal(alice, id, 5_000)).status).toBe('cancelled');
    // The machine hears it from its next heartbeat (1 s here) and SIGTERMs the job program.
    await waitFor(async () => readFileSync(trace, 'utf8').includes(' sigterm'), 10_000);
    const stopMs = Date.now() - cancelledAt;
    await sleep(1_500);
    const j = await alice.get<{ status: string }>(`jobs/${id}`);
    expect(j.status).toBe('cancelled');
    expect(readFileSync(trace, 'utf8')).not.toContain(' done');
    const events = await allEvents(alice, id);
    expect(events.filter((e) => e.type === 'succeeded')).toHaveLength(0);
    console.log(`[e2e] cancel: job on ${running.machine_id} got SIGTERM ${stopMs} ms after DELETE`);

    // The machine is free again: a quick job still runs.
    const after = await submitJob(alice, { payload: { sleep_ms: 100 } });
    expect((await waitTerminal(alice, after, 30_000)).status).toBe('succeeded');
  });
});

describe('retry', () => {
  it('a failed job retried after its cause is fixed runs again and succeeds, with one success', async () => {
    // The job writes a trace into a directory that does not exist yet: the job program fails (non-retryable).
    const missingDir = join(fleet.dir, 'not-yet', String(Date.now()));
    const trace = join(missingDir, 'trace.log');
    const id = await submitJob(alice, { payload: { trace_file: trace } });
    const failed = await waitTerminal(alice, id, 30_000);
    expect(failed.status).toBe('failed');
    expect(failed.error).toMatch(/ENOENT|no such file/i);
    const failedEpoch = failed.epoch;

    // Retrying a job that is not failed/cancelled is refused.
    const early = await submitJob(alice, { payload: { sleep_ms: 100 } });
    await waitTerminal(alice, early, 30_000);
    expect((await alice.raw('POST', `jobs/${early}/retry`)).status).toBe(409);

    mkdirSync(missingDir, { recursive: true });
    const retried = await alice.post<{ job_id: string; status: string }>(`jobs/${id}/retry`);
    expect(retried.status).toBe('pending');
    const done = await waitTerminal(alice, id, 30_000);
    expect(done.status).toBe('succeeded');
    expect(done.epoch).toBeGreaterThan(failedEpoch);
    expect(done.attempt).toBeGreaterThan(failed.attempt);
    expect(done.error).toBeNull();

    const events = await allEvents(alice, id);
    expect(events.filter((e) => e.type === 'failed')).toHaveLength(1);
    expect(events.filter((e) => e.type === 'succeeded')).toHaveLength(1);
    expect(events.filter((e) => e.type === 'started')).toHaveLength(2);
    const lines = readFileSync(trace, 'utf8').trim().split('\n');
    expect(lines.filter((l) => l.endsWith(' done'))).toHaveLength(1);
    console.log(`[e2e] retry: failed at epoch ${failedEpoch} attempt ${failed.attempt}, succeeded at epoch ${done.epoch} attempt ${done.attempt}`);
  });
});

async function waitFor(check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  await until('condition', check, timeoutMs, 150, () => fleet.logs(2000));
}

// A storage emulator restarted under load. This file starts its own Azurite (blobs + the per-machine dispatch queues)
// with an on-disk location, so its data survives a restart, submits jobs continuously, kills Azurite with SIGKILL
// mid-run and starts it again on the same ports and location. No manual step follows: the dev host, the agents and
// the submitting client must carry on by themselves, and every job must end succeeded, exactly once.
//
// Why Azurite and not Cosmos: cosmosdb-server (the Cosmos emulator used locally) keeps everything in memory, so
// restarting it loses every database — that would test the emulator, not our recovery. Azurite persists to disk
// (LokiJS, saved every 5 s), so a SIGKILL also loses up to 5 s of queue operations: sent dispatch messages may vanish
// (the reaper re-routes unclaimed jobs after CLAIM_TIMEOUT_SECONDS) and deleted ones may come back (the claim's epoch
// fence drops them). Both are part of what this test survives.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiClient, ApiRequestError } from '../../api-client/index.js';
import { makeSafetensors } from '../../testkit/safetensors.js';
import { startAzurite, type AzuriteHandle } from '../../local/emulators.js';
import { freePort } from '../../local/processes.js';
import { startTestFleet, type TestFleet } from '../support/test-agents.js';
import { startTestHost, type TestHost } from '../support/stack.js';
import { allEvents, FAST_SETTINGS, mapLimit, sleep, TERMINAL, uploadUserLora, waitJob } from '../e2e/helpers.js';

let dir: string;
let azurite: AzuriteHandle | undefined;
let ports: { blob: number; queue: number };
let t: TestHost;
let fleet: TestFleet;
const t0 = Date.now();

const startPrivateAzurite = () => startAzurite({ location: join(dir, 'azurite'), blobPort: ports.blob, queuePort: ports.queue });

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'lora-router-azurite-restart-'));
  ports = { blob: await freePort(), queue: await freePort() };
  azurite = await startPrivateAzurite();
  t = await startTestHost(
    {
      ...FAST_SETTINGS,
      LoraStorage: azurite.connectionString,
      AzureWebJobsStorage: azurite.connectionString,
      CLAIM_TIMEOUT_SECONDS: '5',
      JOB_MAX_ATTEMPTS: '10',
    },
    { timers: true },
  );
  fleet = await startTestFleet(t, 2, { prefix: 'azr', slots: 2, dispatchLockSeconds: 10, lockRenewSeconds: 3 });
});

afterAll(async () => {
  if (process.env.CHAOS_DEBUG) console.log(`${t?.host.output().slice(-8000)}\n${fleet?.logs(4000)}`);
  await fleet?.stop();
  await t?.stop();
  await azurite?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
  console.log(`[chaos] storage-restart file took ${((Date.now() - t0) / 1000).toFixed(1)} s`);
});

/** A client that keeps trying, with the same Idempotency-Key, until the API accepts the job (as a careful CLI would). */
async function submitWithRetry(api: ApiClient, key: string, body: unknown): Promise<{ id: string; tries: number }> {
  for (let tries = 1; ; tries++) {
    try {
      const r = await api.post<{ job_id: string }>('jobs', body, { 'Idempotency-Key': key });
      return { id: r.job_id, tries };
    } catch (err) {
      const retryable = err instanceof TypeError || (err instanceof ApiRequestError && (err.status >= 500 || err.status === 429));
      if (!retryable || tries > 60) throw err;
      await sleep(500);
    }
  }
}

describe('e. Azurite restarted under load', () => {
  it('loses no job: every submitted job ends succeeded exactly once, with no manual step', async () => {
    const user = await t.as('storage-chaos');
    const lora = await uploadUserLora(t, user, 'storage-chaos', makeSafetensors({ dataBytes: 128 * 1024, seed: 51 }), 'azr.safetensors');
    await sleep(6_000); // past Azurite's 5 s save interval: the LoRA's blob is on disk before the crash

    const SUBMIT_MS = 10_000;
    const EVERY_MS = 500;
    const KILL_AT_MS = 4_000;
    const DOWN_MS = 3_000;
    const submitted: { key: string; id: string; tries: number }[] = [];
    const submitting: Promise<void>[] = [];
    const start = Date.now();
    let n = 0;
    let killedAt = 0;
    let restartedAt = 0;
    const chaos = (async () => {
      await sleep(KILL_AT_MS);
      killedAt = Date.now();
      azurite!.child.kill('SIGKILL');
      await azurite!.exited;
      await sleep(DOWN_MS);
      azurite = await startPrivateAzurite();
      restartedAt = Date.now();
    })();
    while (Date.now() - start < SUBMIT_MS) {
      const key = `storage-chaos-${n}`;
      const body = {
        service_required: 'image-gen',
        payload: { sleep_ms: 300, n },
        requirements: { loras: n % 2 === 0 ? [{ type: 'user', flat_file_id: lora.key }] : [] },
      };
      n++;
      submitting.push(submitWithRetry(user, key, body).then((r) => void submitted.push({ key, ...r })));
      await sleep(EVERY_MS);
    }
    console.log(`[chaos] storage-restart: ${n} submissions started; waiting for them to be accepted`);
    await chaos;
    await Promise.all(submitting);
    console.log(`[chaos] storage-restart: all ${n} accepted after ${((Date.now() - start) / 1000).toFixed(1)} s`);
    expect(submitted).toHaveLength(n);
    expect(new Set(submitted.map((s) => s.id)).size).toBe(n); // one job per submission, retries included

    // Progress from the job list (one request for all jobs), then every job read one by one.
    const waitStart = Date.now();
    for (let lastPrint = 0; Date.now() - waitStart < 240_000; await sleep(1_000)) {
      const { jobs } = await user.get<{ jobs: { job_id: string; status: string }[] }>('jobs?limit=500').catch(() => ({ jobs: [] }));
      const mine = jobs.filter((j) => submitted.some((s) => s.id === j.job_id));
      const counts: Record<string, number> = {};
      for (const j of mine) counts[j.status] = (counts[j.status] ?? 0) + 1;
      if (Date.now() - lastPrint > 10_000) {
        console.log(`[chaos] storage-restart: +${((Date.now() - start) / 1000).toFixed(0)}s ${JSON.stringify(counts)}`);
        lastPrint = Date.now();
      }
      if (mine.length === n && mine.every((j) => TERMINAL.has(j.status))) break;
    }
    const finals = await mapLimit(submitted, 8, (s) =>
      waitJob(user, s.id, (v) => TERMINAL.has(v.status), 5_000, 400).catch((err: Error) => {
        const about = [
          ...fleet.agents.flatMap((a) => a.output().split('\n').filter((l) => l.includes(s.id)).map((l) => `${a.machineId}: ${l.slice(0, 300)}`)),
          ...t.host.output().split('\n').filter((l) => l.includes(s.id)).map((l) => `host: ${l.slice(0, 300)}`),
        ];
        throw new Error(`${err.message}\n${about.join('\n')}`);
      }),
    );
    const bad = finals.filter((j) => j.status !== 'succeeded');
    expect(bad.map((j) => `${j.job_id} ${j.status} ${j.error}`), fleet.logs(3000)).toEqual([]);
    let duplicates = 0;
    for (const j of finals) {
      const events = await allEvents(user, j.job_id);
      duplicates += Math.max(0, events.filter((e) => e.type === 'succeeded').length - 1);
    }
    expect(duplicates).toBe(0);
    const retriedSubmits = submitted.filter((s) => s.tries > 1).length;
    const reattempted = finals.filter((j) => j.epoch > 1).length;
    const recoverMs = Math.max(...finals.map((j) => Date.parse(j.finished_at!))) - restartedAt;
    console.log(
      `[chaos] storage-restart jobs=${n} azurite_down=${((restartedAt - killedAt) / 1000).toFixed(1)}s (SIGKILL at +${((killedAt - start) / 1000).toFixed(1)}s) ` +
        `submits_retried=${retriedSubmits} jobs_redispatched=${reattempted} lost=0 succeeded=${finals.length} duplicates=${duplicates} ` +
        `last_job_done=${(recoverMs / 1000).toFixed(1)}s after restart`,
    );
  }, 360_000);
});

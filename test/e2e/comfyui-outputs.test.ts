// End to end on the local stack with real agent processes running EXECUTOR=comfyui, each next to its own ComfyUI
// protocol double process (testkit/comfyui: a test double of ComfyUI's HTTP + WebSocket API, not ComfyUI itself):
// upload a LoRA → submit a ComfyUI workflow that uses it → progress events → succeeded with PNG outputs →
// `lora-router outputs --download` writes PNGs whose sha256 matches the job view; another tenant gets 404; a cancel
// interrupts ComfyUI; ComfyUI killed mid-run → the attempt is retried on the other machine and the outputs come from
// one epoch only; an output upload for a stale epoch is refused.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { BlobServiceClient } from '@azure/storage-blob';
import { PNG } from 'pngjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiRequestError, type ApiClient } from '../../api-client/index.js';
import type { JobView } from '../../contract/jobs.js';
import type { JobOutputList } from '../../contract/outputs.js';
import { makeSafetensors } from '../../testkit/safetensors.js';
import { comfyUiAgentEnv, startComfyUiDouble, type ComfyUiProcess } from '../../local/comfyui.js';
import { exampleWorkflow } from '../../testkit/comfyui/workflow.js';
import { startTestFleet, type TestFleet } from '../support/test-agents.js';
import { startTestHost, type TestHost } from '../support/stack.js';
import { allEvents, FAST_SETTINGS, sleep, submitJob, uploadUserLora, waitJob, waitTerminal } from './helpers.js';

const run = promisify(execFile);
let t: TestHost;
let fleet: TestFleet;
let alice: ApiClient;
let bob: ApiClient;
let loraKey: string;
const comfy = new Map<string, ComfyUiProcess>();
const tmp = mkdtempSync(join(tmpdir(), 'e2e-comfyui-'));

beforeAll(async () => {
  t = await startTestHost({ ...FAST_SETTINGS, OUTPUT_MAX_FILES: '8' }, { timers: true });
  fleet = await startTestFleet(t, 2, { prefix: 'comfy', start: false });
  for (const a of fleet.agents) {
    const c = await startComfyUiDouble({ baseDir: join(tmp, a.machineId), stepMs: 25, name: `comfyui ${a.machineId}` });
    comfy.set(a.machineId, c);
    a.launch.env = { ...a.launch.env, ...comfyUiAgentEnv(c, 30) };
  }
  await Promise.all(fleet.agents.map((a) => a.start()));
  alice = await t.as('alice');
  bob = await t.as('bob');
  const lora = await uploadUserLora(t, alice, 'alice', makeSafetensors({ dataBytes: 256 * 1024, seed: 21 }), 'alice-ink.safetensors');
  loraKey = lora.key;
});

afterAll(async () => {
  if (process.env.E2E_DEBUG) console.log(fleet?.logs(6000));
  await fleet?.stop();
  await Promise.all([...comfy.values()].map((c) => c.stop(3000)));
  await t?.stop();
  rmSync(tmp, { recursive: true, force: true });
});

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const workflowJob = (o: Parameters<typeof exampleWorkflow>[0]) => submitJob(alice, { user: [loraKey], payload: { workflow: exampleWorkflow({ loras: [loraKey], ...o }) } });

async function waitEvent(jobId: string, type: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await allEvents(alice, jobId)).some((e) => e.type === type)) {
    if (Date.now() > deadline) throw new Error(`no ${type} event for ${jobId} in ${timeoutMs} ms\n${fleet.logs(3000)}`);
    await sleep(200);
  }
}

async function statusOf(p: Promise<unknown>): Promise<number> {
  try {
    await p;
    return 200;
  } catch (err) {
    if (err instanceof ApiRequestError) return err.status;
    throw err;
  }
}

describe('ComfyUI jobs deliver their images to their owner', () => {
  it('runs a workflow with the user LoRA, reports progress, and the CLI downloads PNGs matching the job view', async () => {
    const jobId = await workflowJob({ seed: 7, width: 96, height: 64, batch: 2, steps: 6 });
    const job = await waitTerminal(alice, jobId, 60_000);
    expect(job.status, JSON.stringify(job) + fleet.logs()).toBe('succeeded');

    const events = await allEvents(alice, jobId);
    const progress = events.filter((e) => e.type === 'progress').map((e) => Number(e.data.progress));
    expect(progress.length).toBeGreaterThan(0);
    expect(progress.at(-1)).toBe(1);
    const logText = events.filter((e) => e.type === 'log').flatMap((e) => e.data.lines as string[]).join('\n');
    expect(logText).toMatch(/\[comfyui\] node 20: lora_name → lora-router\/job_\w+-e\d+\/user-/);
    expect(logText).toMatch(/\[comfyui\] executing node 3 \(KSampler\)/);

    // The job view lists the outputs; the double saw the LoRA link under this run's folder.
    expect(job.outputs.map((o) => [o.name, o.content_type])).toEqual([
      ['9-lora-router_00001_.png', 'image/png'],
      ['9-lora-router_00002_.png', 'image/png'],
    ]);
    expect(job.outputs_expire_at).not.toBeNull();

    // The CLI, as a user would run it.
    const dir = join(tmp, 'download');
    const cli = await run(process.execPath, ['dist/cli/index.js', 'outputs', jobId, '--download', dir], {
      env: { ...process.env, LORA_ROUTER_API: t.apiUrl, LORA_ROUTER_TOKEN: alice.options.token! },
    });
    expect(cli.stdout).toMatch(/matches the job/);
    expect(readdirSync(dir).sort()).toEqual(job.outputs.map((o) => o.name).sort());
    for (const o of job.outputs) {
      const bytes = readFileSync(join(dir, o.name));
      expect(sha(bytes)).toBe(o.sha256);
      expect(bytes.length).toBe(o.size_bytes);
      const png = PNG.sync.read(bytes);
      expect([png.width, png.height]).toEqual([96, 64]);
    }
    console.log(`[e2e comfyui] ${job.outputs.length} PNGs, ${job.outputs.reduce((n, o) => n + o.size_bytes, 0)} bytes, downloaded to ${dir}`);

    // Owner only: another tenant gets 404 for the outputs and the job.
    expect(await statusOf(bob.get(`jobs/${jobId}/outputs`))).toBe(404);
    expect(await statusOf(bob.get(`jobs/${jobId}`))).toBe(404);
    // The read URL is a SAS for one blob under this tenant/job/epoch.
    const list = await alice.get<JobOutputList>(`jobs/${jobId}/outputs`);
    expect(list.outputs[0]!.url).toContain(`/outputs/alice/${jobId}/e${job.epoch}/`);
  }, 180_000);

  it('a workflow ComfyUI rejects fails for good with ComfyUI\'s own error text', async () => {
    const jobId = await submitJob(alice, { user: [loraKey], payload: { workflow: exampleWorkflow({ loras: ['someone-elses.safetensors'] }) } });
    const job = await waitTerminal(alice, jobId, 60_000);
    expect(job.status).toBe('failed');
    expect(job.attempt).toBe(1);
    expect(job.error).toMatch(/ComfyUI rejected the workflow: Prompt outputs failed validation: Value not in list: lora_name: 'someone-elses.safetensors'/);
    expect(job.outputs).toEqual([]);
  }, 180_000);

  it('more outputs than OUTPUT_MAX_FILES: the job fails for good with a clear error event and records no outputs', async () => {
    const jobId = await workflowJob({ batch: 9, steps: 1, width: 16, height: 16 });
    const job = await waitTerminal(alice, jobId, 60_000);
    expect(job.status).toBe('failed');
    expect(job.error).toMatch(/outputs refused by the API \(413\): the job produced 9 output files; at most 8 are accepted per job \(OUTPUT_MAX_FILES\)/);
    expect(job.outputs).toEqual([]);
    expect((await alice.get<JobOutputList>(`jobs/${jobId}/outputs`)).outputs).toEqual([]);
    const failed = (await allEvents(alice, jobId)).filter((e) => e.type === 'failed');
    expect(failed.map((e) => e.data.outcome)).toEqual(['failed']);
  }, 180_000);

  it('a cancel interrupts ComfyUI (/interrupt for the prompt, and it is removed from the queue)', async () => {
    const jobId = await workflowJob({ steps: 4000 });
    await waitEvent(jobId, 'progress');
    const running = await waitJob(alice, jobId, (j) => j.status === 'running');
    await alice.delete(`jobs/${jobId}`);
    const c = comfy.get(running.machine_id!)!;
    const journal = async () => (await (await fetch(`${c.url}/testkit/journal`)).json()) as { journal: { method: string; path: string; body: unknown }[] };
    const deadline = Date.now() + 20_000;
    let interrupts: unknown[] = [];
    while (interrupts.length === 0 && Date.now() < deadline) {
      interrupts = (await journal()).journal.filter((e) => e.path === '/interrupt').map((e) => e.body);
      await sleep(200);
    }
    const prompts = (await journal()).journal.filter((e) => e.path === '/prompt' && e.method === 'POST');
    expect(interrupts.length).toBeGreaterThan(0);
    const lastPromptLog = (await allEvents(alice, jobId)).flatMap((e) => (e.type === 'log' ? (e.data.lines as string[]) : [])).find((l) => /queued prompt/.test(l))!;
    const promptId = /queued prompt (\S+)/.exec(lastPromptLog)![1];
    expect(interrupts).toContainEqual({ prompt_id: promptId });
    expect(prompts.length).toBeGreaterThan(0);
    expect((await waitTerminal(alice, jobId)).status).toBe('cancelled');
  }, 180_000);

  it('ComfyUI killed mid-run: the attempt is retried on the other machine; outputs come from one epoch; the stale epoch cannot upload', async () => {
    const jobId = await workflowJob({ steps: 800, seed: 99 });
    await waitEvent(jobId, 'progress');
    const first = await getRunning(jobId);
    expect(first.status).toBe('running'); // 800 steps × 25 ms: still running when ComfyUI is killed
    const victim = comfy.get(first.machine_id!)!;
    victim.child.kill('SIGKILL');
    await victim.exited;

    const job = await waitTerminal(alice, jobId, 90_000);
    expect(job.status, JSON.stringify(job) + fleet.logs()).toBe('succeeded');
    expect(job.machine_id).not.toBe(first.machine_id);
    expect(job.epoch).toBeGreaterThan(first.epoch);
    const failed = (await allEvents(alice, jobId)).find((e) => e.type === 'failed')!;
    expect(String(failed.data.reason)).toMatch(/ComfyUI went away mid-run/);
    expect(failed.data.outcome).toBe('retrying');
    // The attempt was spent, and the machine said it was unhealthy (that heartbeat landed before the failure report),
    // so the retry could not be placed back on it, however well its cached LoRA scored.
    const loser = fleet.byId(first.machine_id!);
    expect(loser.output()).toMatch(/machine marked unhealthy.*ComfyUI went away mid-run|ComfyUI went away mid-run.*machine marked unhealthy/);

    // Every stored blob of this job is under the final epoch's prefix, and the list matches the job view.
    const blobs = BlobServiceClient.fromConnectionString(t.settings.LoraStorage!).getContainerClient(t.settings.OUTPUT_CONTAINER!);
    const names: string[] = [];
    for await (const b of blobs.listBlobsFlat({ prefix: `outputs/alice/${jobId}/` })) names.push(b.name);
    expect(names).toEqual(job.outputs.map((o) => `outputs/alice/${jobId}/e${job.epoch}/${o.name}`));
    expect(job.outputs.length).toBe(1);

    // The machine that lost the attempt asks to upload for its old epoch: refused.
    const res = await fetch(`${t.apiUrl}/jobs/${jobId}/outputs/uploads`, {
      method: 'POST',
      headers: { authorization: `Bearer ${loser.launch.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ epoch: first.epoch, files: [{ name: 'late.png', size_bytes: 10, content_type: 'image/png' }] }),
    });
    expect(res.status).toBe(409);
    expect(((await res.json()) as { error: { message: string } }).error.message).toMatch(/stale output upload/);
  }, 180_000);
});

async function getRunning(jobId: string): Promise<JobView> {
  return waitJob(alice, jobId, (j) => j.status === 'running' && j.machine_id !== null);
}

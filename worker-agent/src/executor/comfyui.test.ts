// The ComfyUI executor against the ComfyUI protocol double (testkit/comfyui: a test double of ComfyUI's HTTP +
// WebSocket API, taken from ComfyUI's source) over real loopback HTTP and WebSocket.
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PNG } from 'pngjs';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { makeSafetensors } from '../../../testkit/safetensors.js';
import { ComfyDouble } from '../../../testkit/comfyui/double.js';
import { exampleWorkflow } from '../../../testkit/comfyui/workflow.js';
import { ComfyUiExecutor, rewriteLoraRefs } from './comfyui.js';
import type { ExecutionOutcome, ExecutorJob } from './types.js';

let dir: string;
let loraPath: string;
let double: ComfyDouble;
let n = 0;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'comfyui-exec-'));
  mkdirSync(join(dir, 'cache'), { recursive: true });
  loraPath = join(dir, 'cache', 'lora_alice.safetensors');
  writeFileSync(loraPath, makeSafetensors({ dataBytes: 32 * 1024, seed: 5 }));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));
afterEach(async () => {
  await double?.stop();
});

async function startDouble(stepMs = 10): Promise<ComfyDouble> {
  double = new ComfyDouble({ baseDir: join(dir, `comfy-${++n}`), stepMs });
  await double.start();
  return double;
}

function job(payload: Record<string, unknown>, key = 'lora_01alice'): ExecutorJob {
  const runDir = join(dir, `run-${++n}`);
  return {
    jobId: `job_${String(n).padStart(26, '0')}`,
    epoch: 1,
    attempt: 1,
    serviceRequired: 'image-gen',
    payload,
    loras: [{ kind: 'user', key, path: loraPath, sha256: 'a'.repeat(64), size_bytes: 1 }],
    runDir,
    outputDir: join(runDir, 'output'),
  };
}

function run(d: ComfyDouble, j: ExecutorJob, opts: { stallMs?: number; onProgress?: (p: number) => void } = {}) {
  const ex = new ComfyUiExecutor({ url: d.url, loraDir: d.lorasDir, stallMs: opts.stallMs ?? 10_000, cancelGraceMs: 2000 });
  const lines: string[] = [];
  const progress: number[] = [];
  const execution = ex.start(j, {
    log: (_s, l) => lines.push(l),
    progress: (p) => {
      progress.push(p);
      opts.onProgress?.(p);
    },
  });
  return { execution, lines, progress };
}

describe('ComfyUI executor', () => {
  it('links the LoRA, rewrites lora_name, follows the WebSocket and collects real PNGs into the output folder', async () => {
    const d = await startDouble();
    const j = job({ workflow: exampleWorkflow({ loras: ['lora_01alice'], width: 48, height: 32, batch: 2, steps: 5 }) });
    const r = run(d, j);
    const outcome = await r.execution.done;
    expect(outcome, r.lines.join('\n')).toMatchObject({ status: 'succeeded' });

    const files = readdirSync(j.outputDir).sort();
    expect(files).toEqual(['9-lora-router_00001_.png', '9-lora-router_00002_.png']);
    const png = PNG.sync.read(readFileSync(join(j.outputDir, files[0]!)));
    expect([png.width, png.height]).toEqual([48, 32]);
    expect(readFileSync(join(j.outputDir, files[0]!))).not.toEqual(readFileSync(join(j.outputDir, files[1]!)));

    // What ComfyUI was sent: our client id, and lora_name pointing at this run's link.
    const post = d.journal.find((e) => e.method === 'POST' && e.path === '/prompt')!.body as { prompt: Record<string, { inputs: Record<string, unknown> }>; client_id: string };
    expect(post.client_id).toMatch(/^[0-9a-f-]{36}$/);
    expect(post.prompt['20']!.inputs.lora_name).toBe(`lora-router/${j.jobId}-e1/user-lora_01alice.safetensors`);
    expect(d.journal.some((e) => e.path.startsWith(`/ws?clientId=${post.client_id}`) || e.path === '/system_stats')).toBe(true);

    // Progress moved forward to 1; the log shows the nodes; the link folder is gone after the run.
    expect(r.progress.at(-1)).toBe(1);
    expect(r.progress.filter((p, i) => i > 0 && p < r.progress[i - 1]!)).toEqual([]);
    expect(r.lines.join('\n')).toMatch(/executing node 3 \(KSampler\)/);
    expect(existsSync(join(d.lorasDir, 'lora-router', `${j.jobId}-e1`))).toBe(false);
  });

  it('rewrites only references to the job\'s own LoRAs, with or without .safetensors', () => {
    const j = job({}, 'lora_x');
    const wf = {
      a: { class_type: 'LoraLoader', inputs: { lora_name: 'lora_x.safetensors' } },
      b: { class_type: 'LoraLoader', inputs: { lora_name: 'system-style.safetensors' } },
      c: { class_type: 'LoraLoaderModelOnly', inputs: { lora_name: '@0' } },
      d: { class_type: 'LoraLoader', inputs: { lora_name: '@1' } },
    };
    const { workflow, replaced } = rewriteLoraRefs(wf, j);
    expect(workflow.a!.inputs!.lora_name).toBe(`lora-router/${j.jobId}-e1/user-lora_x.safetensors`);
    expect(workflow.b!.inputs!.lora_name).toBe('system-style.safetensors');
    expect(workflow.c!.inputs!.lora_name).toBe(`lora-router/${j.jobId}-e1/user-lora_x.safetensors`);
    expect(workflow.d!.inputs!.lora_name).toBe('@1'); // no second LoRA: left for ComfyUI to refuse
    expect(Object.keys(replaced)).toEqual(['a', 'c']);
    expect(wf.a.inputs.lora_name).toBe('lora_x.safetensors'); // the payload itself is untouched
  });

  it('fails for good with ComfyUI\'s own error text when it rejects the workflow', async () => {
    const d = await startDouble();
    const wf = exampleWorkflow({ loras: ['not-a-lora-of-this-job.safetensors'] });
    const outcome = await run(d, job({ workflow: wf })).execution.done;
    expect(outcome.status).toBe('failed');
    const f = outcome as Extract<ExecutionOutcome, { status: 'failed' }>;
    expect(f.retryable).toBe(false);
    expect(f.reason).toMatch(/ComfyUI rejected the workflow: Prompt outputs failed validation: Value not in list: lora_name: 'not-a-lora-of-this-job.safetensors'/);
    expect(f.reason).toMatch(/node 20 \(LoraLoader\)/);
  });

  it('cancel calls /interrupt for the prompt and removes it from the queue', async () => {
    const d = await startDouble(30);
    let r!: ReturnType<typeof run>;
    const first = new Promise<void>((resolve) => {
      r = run(d, job({ workflow: exampleWorkflow({ loras: ['lora_01alice'], steps: 500 }) }), { onProgress: () => resolve() });
    });
    await first;
    r.execution.cancel('cancelled by the user');
    const outcome = await r.execution.done;
    expect(outcome).toEqual({ status: 'cancelled', reason: 'cancelled by the user', forced: false });
    const promptId = (d.journal.find((e) => e.path === '/prompt' && e.method === 'POST') && r.lines.join('\n').match(/queued prompt (\S+)/)?.[1])!;
    expect(d.journal.filter((e) => e.path === '/interrupt').map((e) => e.body)).toEqual([{ prompt_id: promptId }]);
    expect(d.journal.filter((e) => e.path === '/queue' && e.method === 'POST').map((e) => e.body)).toEqual([{ delete: [promptId] }]);
  });

  it('a ComfyUI that dies mid-run fails the attempt as retryable, with the reason', async () => {
    const d = await startDouble(30);
    let r!: ReturnType<typeof run>;
    await new Promise<void>((resolve) => {
      r = run(d, job({ workflow: exampleWorkflow({ loras: ['lora_01alice'], steps: 500 }) }), { onProgress: () => resolve() });
    });
    await d.stop();
    const outcome = await r.execution.done;
    // The attempt is spent (the job may have killed it) and the machine says its backend is gone.
    expect(outcome).toMatchObject({ status: 'failed', retryable: true, backendLost: true, reason: expect.stringMatching(/ComfyUI went away mid-run: its WebSocket closed/) });
    expect(outcome).not.toHaveProperty('infrastructure');
  });

  it('a hung ComfyUI (no message for COMFYUI_STALL_SECONDS) fails the attempt as retryable and interrupts it', async () => {
    const d = await startDouble(30);
    let r!: ReturnType<typeof run>;
    await new Promise<void>((resolve) => {
      r = run(d, job({ workflow: exampleWorkflow({ loras: ['lora_01alice'], steps: 500 }) }), { stallMs: 600, onProgress: () => resolve() });
    });
    await fetch(`${d.url}/testkit/freeze`, { method: 'POST', body: JSON.stringify({ frozen: true }) });
    const outcome = await r.execution.done;
    expect(outcome).toMatchObject({ status: 'failed', retryable: true, reason: expect.stringMatching(/made no progress .* for 1 s/) });
    expect(d.journal.some((e) => e.path === '/interrupt')).toBe(true);
  });

  it('a ComfyUI that is not there is the machine\'s failure (no attempt spent), before anything is linked', async () => {
    const d = await startDouble();
    const url = d.url;
    await d.stop();
    const ex = new ComfyUiExecutor({ url, loraDir: d.lorasDir, stallMs: 5000, cancelGraceMs: 1000 });
    const j = job({ workflow: exampleWorkflow() });
    const outcome = await ex.start(j, { log: () => undefined, progress: () => undefined }).done;
    expect(outcome).toMatchObject({ status: 'failed', retryable: true, infrastructure: true, reason: expect.stringMatching(/ComfyUI is not reachable at http:\/\/127\.0\.0\.1:\d+ \(\/system_stats/) });
    expect(existsSync(join(d.lorasDir, 'lora-router', `${j.jobId}-e1`))).toBe(false);
  });

  it('a payload without a workflow fails for good', async () => {
    const d = await startDouble();
    const outcome = await run(d, job({ prompt: 'no workflow' })).execution.done;
    expect(outcome).toMatchObject({ status: 'failed', retryable: false, reason: expect.stringMatching(/payload.workflow must be a ComfyUI workflow/) });
  });
});

// `lora-router smoke --api <url>`: the check a person runs after `azd up` (docs/deploy.md, last step). It walks one
// job through the deployed system with a real token and throwaway names, then cleans up:
//   health (every dependency up) → auth (anonymous refused, the token accepted) → a tiny LoRA uploaded through the
//   SAS flow until `ready` → a throwaway machine registered in its own pool and heartbeating → a job submitted to that
//   pool and assigned to that machine → cleanup (job cancelled, LoRA deleted, machine deregistered).
// Needs an admin token (registering a machine is an admin action): --token / LORA_ROUTER_TOKEN, or in Azure an Entra
// token from @azure/identity (az login, a managed identity...) for --scope / AUTH_AUDIENCE, or locally --dev-secret.
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Command } from 'commander';
import { DefaultAzureCredential } from '@azure/identity';
import type { JobView } from '../../contract/jobs.js';
import type { HeartbeatResponse } from '../../contract/machines.js';
import { issueDevToken } from '../../functions/core/auth.js';
import { ApiClient, ApiRequestError, resolveApiBase } from '../../api-client/index.js';
import { uploadLora } from './loras.js';
import type { CliContext } from '../index.js';

/** A minimal valid LoRA file (two F16 tensors, random data): the smoke needs one, and the CLI ships no test kit. */
export function tinyLora(): Buffer {
  const header = {
    __metadata__: { format: 'pt', ss_network_module: 'networks.lora' },
    'lora_unet_mid_block.lora_down.weight': { dtype: 'F16', shape: [4, 64], data_offsets: [0, 512] },
    'lora_unet_mid_block.lora_up.weight': { dtype: 'F16', shape: [64, 4], data_offsets: [512, 1024] },
  };
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  return Buffer.concat([prefix, Buffer.from(json), randomBytes(1024)]);
}

export interface SmokeStep {
  step: string;
  ok: boolean;
  detail: string;
}
export interface SmokeOptions {
  api: string;
  /** An admin bearer token (Entra in Azure, a dev token locally). */
  token: string;
  /** How long to wait for validation and for the assignment. Default 120 s. */
  timeoutMs?: number;
  log?: (step: SmokeStep) => void;
}
export interface SmokeResult {
  ok: boolean;
  steps: SmokeStep[];
  /** The throwaway names, so a failed run can be cleaned up by hand. */
  names: { machineId: string; pool: string; loraId?: string; jobId?: string };
}

type Health = { status: string; dependencies: Record<string, { status: string; latency_ms: number; error?: string }> };

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Runs the smoke; never throws for a failed check (each step reports), only for a programming error. */
export async function runSmoke(opts: SmokeOptions): Promise<SmokeResult> {
  const timeoutMs = opts.timeoutMs ?? 120_000;
  const suffix = randomBytes(4).toString('hex');
  const names: SmokeResult['names'] = { machineId: `smoke-${suffix}`, pool: `smoke-${suffix}` };
  const steps: SmokeStep[] = [];
  const record = (step: string, ok: boolean, detail: string) => {
    const s = { step, ok, detail };
    steps.push(s);
    opts.log?.(s);
    return ok;
  };
  const anonymous = new ApiClient({ baseUrl: opts.api });
  const api = anonymous.withToken(opts.token);
  const failure = (err: unknown) => (err instanceof ApiRequestError ? `${err.code} (HTTP ${err.status}): ${err.message}` : (err as Error).message);
  let machineToken: string | undefined;
  let dir: string | undefined;

  const run = async (): Promise<void> => {
    // 1. Health: every dependency up.
    const res = await anonymous.raw('GET', 'health');
    const health = (await res.json().catch(() => ({}))) as Health;
    const deps = Object.entries(health.dependencies ?? {}).map(([k, d]) => `${k} ${d.status} (${d.latency_ms} ms${d.error ? `: ${d.error}` : ''})`);
    if (!record('health', res.status === 200 && health.status === 'ok', `HTTP ${res.status}, ${deps.join(', ') || 'no dependency report'}`)) return;

    // 2. Auth: anonymous callers refused, this token accepted.
    const anon = await anonymous.raw('GET', 'jobs');
    await anon.body?.cancel();
    try {
      await api.get('machines');
      if (!record('auth', anon.status === 401, `anonymous GET /jobs → HTTP ${anon.status}; the token reads /machines (admin)`)) return;
    } catch (err) {
      record('auth', false, `the token was refused: ${failure(err)}`);
      return;
    }

    // 3. A tiny LoRA through the SAS flow, until validated.
    dir = await mkdtemp(join(tmpdir(), 'lora-router-smoke-'));
    const file = join(dir, `smoke-${suffix}.safetensors`);
    await writeFile(file, tinyLora());
    const up = await uploadLora(api, file, { flow: 'sas', waitTimeoutMs: timeoutMs });
    names.loraId = up.id;
    if (!record('upload', up.status === 'ready', `${up.id} ${up.status} via ${up.flow}, ${up.size_bytes} bytes${up.reject_reason ? ` (${up.reject_reason})` : ''}`)) return;

    // 4. A throwaway machine in its own pool, so no real machine can take the job and it takes no real job.
    const reg = await api.post<{ token: string }>('machines', { machine_id: names.machineId, pool: names.pool, slots: 1 });
    machineToken = reg.token;
    const machine = anonymous.withToken(machineToken);
    const heartbeat = () =>
      machine.post<HeartbeatResponse>(`machines/${names.machineId}/heartbeat`, {
        pool: names.pool,
        slots: 1,
        running_jobs: [],
        cached_loras: { user: [], shared: [] },
        cache: { budget_bytes: 1, used_bytes: 0, free_disk_bytes: 1, counters: { hits: 0, misses: 0, downloads: 0, bytes_downloaded: 0, evictions: 0, thrash: 0 } },
        agent_version: 'smoke',
      });
    await heartbeat();
    record('machine', true, `${names.machineId} registered in pool ${names.pool}, heartbeat accepted`);

    // 5. A job for that pool, needing the LoRA, assigned to that machine by the scheduler.
    const job = await api.post<{ job_id: string }>('jobs', {
      service_required: 'smoke',
      pool: names.pool,
      requirements: { loras: [{ type: 'user', flat_file_id: up.id }] },
    });
    names.jobId = job.job_id;
    const deadline = Date.now() + timeoutMs;
    let view: JobView | undefined;
    let lastBeat = Date.now();
    while (Date.now() < deadline) {
      view = await api.get<JobView>(`jobs/${job.job_id}`);
      if (view.status !== 'pending') break;
      if (Date.now() - lastBeat > 3000) {
        await heartbeat(); // stay live for the scheduler while waiting
        lastBeat = Date.now();
      }
      await sleep(500);
    }
    record(
      'assign',
      view?.status === 'assigned' && view.machine_id === names.machineId,
      `${job.job_id} ${view?.status ?? 'unknown'} on ${view?.machine_id ?? 'no machine'} (policy ${view?.policy ?? '-'})`,
    );
  };

  try {
    await run();
  } catch (err) {
    record(steps.length === 0 ? 'health' : 'error', false, failure(err));
  }

  // Cleanup, whatever happened: cancel the job (the dispatch message is then refused by the API if ever received),
  // delete the LoRA, deregister the throwaway machine.
  const cleanup: string[] = [];
  try {
    if (names.jobId) {
      await api.delete(`jobs/${names.jobId}`).then(() => cleanup.push(`job ${names.jobId} cancelled`));
    }
    if (names.loraId) {
      await api.delete(`user-loras/${names.loraId}`).then(() => cleanup.push(`LoRA ${names.loraId} deleted`));
    }
    if (machineToken) {
      await api.delete(`machines/${names.machineId}`).then(() => cleanup.push(`machine ${names.machineId} deregistered`));
    }
    record('cleanup', true, cleanup.join(', ') || 'nothing to clean up');
  } catch (err) {
    record('cleanup', false, `${cleanup.join(', ')}${cleanup.length ? '; then ' : ''}${failure(err)}`);
  } finally {
    if (dir) await rm(dir, { recursive: true, force: true });
  }
  return { ok: steps.every((s) => s.ok), steps, names };
}

/** The admin token for the smoke: explicit, else an Entra token for the API's scope, else a local dev token. */
async function smokeToken(opts: { token?: string; scope?: string; devSecret?: string }): Promise<string> {
  if (opts.token) return opts.token;
  if (opts.devSecret) return issueDevToken(opts.devSecret, 'smoke', 'admin', 900);
  const scope = opts.scope ?? (process.env.AUTH_AUDIENCE ? `${process.env.AUTH_AUDIENCE}/.default` : undefined);
  if (!scope) throw new Error('no token: pass --token, --scope <api-app-id>/.default (or set AUTH_AUDIENCE), or --dev-secret locally');
  const t = await new DefaultAzureCredential().getToken(scope.endsWith('/.default') ? scope : `${scope}/.default`);
  if (!t?.token) throw new Error(`@azure/identity returned no token for ${scope}`);
  return t.token;
}

export function register(program: Command, _ctx: CliContext): void {
  program
    .command('smoke')
    .description('post-deploy check: health, auth, a LoRA upload (SAS), a job assigned to a throwaway machine, cleanup (admin token)')
    .option('--scope <scope>', 'Entra scope for the token, e.g. api://<api-app-id>/.default (default: $AUTH_AUDIENCE/.default)')
    .option('--dev-secret <secret>', 'local stack only: sign a dev admin token with this AUTH_DEV_SECRET')
    .option('--timeout <seconds>', 'wait this long for validation and for the assignment', '120')
    .action(async (opts: { scope?: string; devSecret?: string; timeout: string }) => {
      const globals = program.opts<{ api?: string; token?: string }>();
      const token = await smokeToken({ token: globals.token ?? process.env.LORA_ROUTER_TOKEN, scope: opts.scope, devSecret: opts.devSecret });
      const api = resolveApiBase(globals.api);
      process.stdout.write(`smoke against ${api}\n`);
      const result = await runSmoke({
        api,
        token,
        timeoutMs: Number(opts.timeout) * 1000,
        log: (s) => process.stdout.write(`${s.ok ? 'ok  ' : 'FAIL'}  ${s.step.padEnd(8)} ${s.detail}\n`),
      });
      process.stdout.write(result.ok ? 'smoke passed\n' : 'smoke FAILED\n');
      if (!result.ok) process.exitCode = 1;
    });
}

// Fixtures for the jobs/scheduler integration tests: LoRA records written straight to Cosmos (the upload API is
// separate work), heartbeat bodies, and a minimal "agent" that talks to the API with its machine token.
import { createHash, randomBytes } from 'node:crypto';
import { ApiClient, ApiRequestError } from '../../api-client/index.js';
import { newLoraId } from '../../contract/ids.js';
import type { JobEventInput, JobView } from '../../contract/jobs.js';
import type { CacheCounters, Heartbeat, HeartbeatResponse } from '../../contract/machines.js';
import { createDispatchReceiver, type DispatchReceiver } from '../../dispatch/index.js';
import { SHARED_OWNER, sharedLoraBlobName, sharedLoraDocId, userLoraBlobName, type LoraDoc } from '../../functions/core/loras/records.js';
import type { LoraStatus } from '../../contract/loras.js';
import type { TestHost } from '../support/stack.js';

import { getJob, sleep } from '../support/helpers.js';
export { getJob, sleep };
export const suffix = () => randomBytes(3).toString('hex');

/** Writes a LoRA record (and, with `content`, its blob) as the upload pipeline would leave it. */
export async function seedLora(
  t: TestHost,
  opts: { owner: string; status?: LoraStatus; content?: Buffer; filename?: string; sizeBytes?: number },
): Promise<{ id: string; key: string; doc: LoraDoc }> {
  const cfg = t.clients.config;
  const shared = opts.owner === SHARED_OWNER;
  const key = shared ? (opts.filename ?? `style-${suffix()}.safetensors`) : newLoraId();
  const container = shared ? cfg.sharedLoraContainer : cfg.userLoraContainer;
  const blob_name = shared ? sharedLoraBlobName(key) : userLoraBlobName(opts.owner, key);
  const now = new Date().toISOString();
  const doc: LoraDoc = {
    id: shared ? sharedLoraDocId(key) : key,
    owner_id: opts.owner,
    kind: shared ? 'shared' : 'user',
    key,
    container,
    blob_name,
    original_name: shared ? key : `${key}.safetensors`,
    size_bytes: opts.content?.length ?? opts.sizeBytes ?? 1024,
    sha256: opts.content ? createHash('sha256').update(opts.content).digest('hex') : 'a'.repeat(64),
    status: opts.status ?? 'ready',
    reject_reason: opts.status === 'rejected' ? 'not a safetensors file' : null,
    created_at: now,
    updated_at: now,
    upload_expires_at: null,
  };
  // Record first, blob second: the BlobCreated handler the dev host fires deletes a LoRA blob that has no record (an
  // orphan); with the record in place it hashes the blob, finds the recorded sha256 and keeps it.
  await t.clients.cosmosContainers.loras.items.upsert(doc);
  if (opts.content) await t.clients.blobService.getContainerClient(container).getBlockBlobClient(blob_name).uploadData(opts.content);
  return { id: doc.id, key, doc };
}

export const zeroCounters = (): CacheCounters => ({ hits: 0, misses: 0, downloads: 0, bytes_downloaded: 0, evictions: 0, thrash: 0 });

export function heartbeat(pool: string, slots: number, opts: Partial<{ user: string[]; shared: string[]; running: { job_id: string; epoch: number }[]; counters: CacheCounters; draining: boolean }> = {}): Heartbeat {
  return {
    pool,
    slots,
    running_jobs: opts.running ?? [],
    cached_loras: { user: opts.user ?? [], shared: opts.shared ?? [] },
    cache: { budget_bytes: 50 * 1024 ** 3, used_bytes: 0, free_disk_bytes: 100 * 1024 ** 3, counters: opts.counters ?? zeroCounters() },
    draining: opts.draining ?? false,
    agent_version: 'test',
  };
}

/** A machine as the tests drive it: registered through the admin API, talking with its own token. */
export class TestMachine {
  readonly api: ApiClient;
  private receiver?: DispatchReceiver;
  constructor(
    readonly t: TestHost,
    readonly id: string,
    readonly pool: string,
    readonly slots: number,
    readonly token: string,
  ) {
    this.api = t.anonymous.withToken(token);
  }

  static async register(t: TestHost, admin: ApiClient, id: string, pool = 'standard', slots = 1): Promise<TestMachine> {
    const res = await admin.post<{ token: string }>('machines', { machine_id: id, pool, slots });
    return new TestMachine(t, id, pool, slots, res.token);
  }

  beat(opts: Parameters<typeof heartbeat>[2] = {}): Promise<HeartbeatResponse> {
    return this.api.post<HeartbeatResponse>(`machines/${this.id}/heartbeat`, heartbeat(this.pool, this.slots, opts));
  }

  claim(jobId: string, epoch: number) {
    return this.api.raw('POST', `jobs/${jobId}/claim`, { body: { machine_id: this.id, epoch } });
  }

  event(jobId: string, ev: JobEventInput) {
    return this.api.raw('POST', `jobs/${jobId}/events`, { body: ev });
  }

  get dispatch(): DispatchReceiver {
    this.receiver ??= createDispatchReceiver({
      transport: 'storage-queue',
      connectionString: this.t.settings.LoraStorage!,
      queuePrefix: this.t.settings.DISPATCH_QUEUE_PREFIX!,
      machineId: this.id,
    });
    return this.receiver;
  }

  /** Receives (and completes) every dispatch message waiting for this machine. */
  async drain(waitMs = 500): Promise<{ job_id: string; epoch: number }[]> {
    const out: { job_id: string; epoch: number }[] = [];
    for (;;) {
      const got = await this.dispatch.receive(32, out.length === 0 ? waitMs : 200);
      if (got.length === 0) return out;
      for (const m of got) {
        out.push(m.message);
        await this.dispatch.complete(m);
      }
    }
  }

  async close(): Promise<void> {
    await this.receiver?.close();
  }
}

export async function runTimer(t: TestHost, name: 'schedulerTick' | 'reaper'): Promise<void> {
  const res = await fetch(`${t.host.url}/admin/functions/${name}`, { method: 'POST', body: '{}', headers: { 'x-functions-key': t.host.adminKey } });
  if (res.status !== 202) throw new Error(`running ${name}: HTTP ${res.status} ${await res.text()}`);
}

/** The HTTP status and error code of a failing request. */
export async function failure(p: Promise<unknown>): Promise<{ status: number; code: string; message: string }> {
  try {
    await p;
  } catch (err) {
    if (err instanceof ApiRequestError) return { status: err.status, code: err.code, message: err.message };
    throw err;
  }
  throw new Error('expected the request to fail');
}

export async function errorOf(res: Response): Promise<{ status: number; code: string; message: string }> {
  const body = (await res.json()) as { error?: { code: string; message: string } };
  return { status: res.status, code: body.error?.code ?? '', message: body.error?.message ?? '' };
}

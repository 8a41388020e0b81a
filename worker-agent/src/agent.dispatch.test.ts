// The agent over the real Service Bus receiver (dispatch/servicebus.ts) and a scripted SDK whose errors are built as
// @azure/service-bus 7.9.5 builds them: a busy session (item 1), lock renewal through transient errors (item 4) and a
// redelivered copy arriving while the original is still claiming (item 5). The API, cache and executor are
// in-memory stand-ins; the real ones run in test/integration/agent.test.ts.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import type { ClaimResponse, JobEventInput, JobEventResponse } from '../../contract/jobs.js';
import type { Heartbeat, HeartbeatResponse } from '../../contract/machines.js';
import { newJobId } from '../../contract/ids.js';
import { ServiceBusDispatchReceiver } from '../../dispatch/servicebus.js';
import { FakeServiceBusClient, afterRetries, sbMessage, sessionCannotBeLocked, sessionLockLost, settleTimeout, type FakeSession } from '../../test/support/servicebus-fake.js';
import { Agent } from './agent.js';
import type { Answer, ControlPlaneApi } from './api.js';
import type { ExecutionOutcome } from './executor/types.js';

const M = 'gpu-unit-02';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function until<T>(what: string, fn: () => T | undefined | false, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

class FakeApi implements ControlPlaneApi {
  readonly heartbeats: Heartbeat[] = [];
  /** What reached the API, in the order it was answered: `heartbeat` (with its unhealthy reason) or `event <type>`. */
  readonly answered: string[] = [];
  /** How long a heartbeat takes to be answered (a slow API). */
  heartbeatDelayMs = 0;
  readonly events: { jobId: string; event: JobEventInput }[] = [];
  readonly claims: { jobId: string; epoch: number }[] = [];
  /** Answers to claims, in order; default 200. */
  readonly claimAnswers: (() => Promise<Answer<ClaimResponse>>)[] = [];
  async claim(jobId: string, epoch: number): Promise<Answer<ClaimResponse>> {
    this.claims.push({ jobId, epoch });
    const next = this.claimAnswers.shift();
    return next ? next() : granted(jobId, epoch);
  }
  async event(jobId: string, event: JobEventInput): Promise<Answer<JobEventResponse>> {
    this.events.push({ jobId, event });
    this.answered.push(`event ${event.type}`);
    return { ok: true, value: { accepted: true, cancel_requested: false } };
  }
  async heartbeat(hb: Heartbeat): Promise<Answer<HeartbeatResponse>> {
    this.heartbeats.push(structuredClone(hb));
    if (this.heartbeatDelayMs) await sleep(this.heartbeatDelayMs);
    this.answered.push(`heartbeat ${hb.unhealthy_reason ?? 'healthy'}`);
    return { ok: true, value: { ok: true, stop_jobs: [] } };
  }
}

const granted = (job_id: string, epoch: number): Answer<ClaimResponse> => ({
  ok: true,
  value: { job_id, epoch, attempt: 1, service_required: 'unit', payload: {}, loras: [], download_url_expires_at: new Date(Date.now() + 60_000).toISOString() },
});

interface Harness {
  agent: Agent;
  api: FakeApi;
  fake: FakeServiceBusClient;
  logs: Record<string, unknown>[];
  /** Resolves the executions started so far / from now on. */
  finishRuns(): void;
  executions: number;
}

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

function harness(fake: FakeServiceBusClient, opts: { lockRenewMs?: number; outcome?: ExecutionOutcome } = {}): Harness {
  const stateDir = mkdtempSync(join(tmpdir(), 'agent-dispatch-'));
  const logs: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _e, cb) {
      for (const line of chunk.toString('utf8').split('\n')) if (line.trim()) logs.push(JSON.parse(line) as Record<string, unknown>);
      cb();
    },
  });
  const log = pino({ level: 'debug' }, sink);
  const api = new FakeApi();
  let release: () => void = () => undefined;
  const finished = new Promise<void>((r) => (release = r));
  const h: Harness = {
    agent: undefined as unknown as Agent,
    api,
    fake,
    logs,
    finishRuns: () => release(),
    executions: 0,
  };
  const receiver = new ServiceBusDispatchReceiver(fake.asClient(), 'jobs', M, { ownsClient: true, warn: (f, m) => log.warn(f, m) });
  h.agent = new Agent({
    config: {
      machineId: M,
      pool: 'standard',
      slots: 2,
      stateDir,
      keepRunDirs: false,
      lockRenewMs: opts.lockRenewMs ?? 60_000,
      heartbeatMs: 60_000,
      ttlSweepMs: 3_600_000,
      drainGraceMs: 2_000,
      cancelGraceMs: 100,
    },
    api,
    receiver,
    cache: {
      acquire: async () => ({ paths: {}, hit: [], missing: [], downloadMs: 0, bytesDownloaded: 0, release: () => undefined }),
      inventory: () => ({ user: [], shared: [], usedBytes: 0, reservedBytes: 0, budgetBytes: 1, freeDiskBytes: 1, counters: { hits: 0, misses: 0, downloads: 0, bytes_downloaded: 0, evictions: 0, thrash: 0 } }),
      sweepTtl: () => [],
      close: async () => undefined,
    },
    executor: {
      kind: 'unit',
      start: () => {
        h.executions++;
        return { done: finished.then((): ExecutionOutcome => opts.outcome ?? { status: 'succeeded' }), cancel: () => release() };
      },
    },
    log,
  });
  cleanups.push(async () => {
    release();
    await h.agent.shutdown('test over');
    rmSync(stateDir, { recursive: true, force: true });
  });
  return h;
}

const logged = (h: Harness, msg: string) => h.logs.filter((l) => l.msg === msg);

describe('agent on a busy session (item 1)', () => {
  it('backs off with a log line each time, reports not receiving at once, and recovers when the session is free', async () => {
    const fake = new FakeServiceBusClient();
    fake.accept.push(sessionCannotBeLocked(M), sessionCannotBeLocked(M), sessionCannotBeLocked(M));
    const h = harness(fake);
    await h.agent.start();
    await until('three busy attempts', () => logged(h, 'session busy: cannot receive dispatches').length >= 3);
    const busy = logged(h, 'session busy: cannot receive dispatches');
    expect(busy.map((l) => l.retry_in_ms)).toEqual([1_000, 2_000, 4_000]);
    expect(busy.map((l) => l.attempt)).toEqual([1, 2, 3]);
    expect(String(busy[0]!.err)).toMatch(/SessionCannotBeLocked/);
    expect(h.agent.receiving).toBe(false);
    // The change of state went out in a heartbeat of its own, not at the next periodic one (60 s here).
    await until('a heartbeat after the state change', () => h.api.heartbeats.length >= 2);
    expect(h.api.heartbeats[0]!.receiving).toBe(true); // the start-up beat, before the first receive
    expect(h.api.heartbeats[1]!.receiving).toBe(false);
    await until('the session accepted', () => logged(h, 'dispatch session acquired; receiving again').length === 1);
    expect(h.agent.receiving).toBe(true);
    await until('a heartbeat after recovering', () => h.api.heartbeats.at(-1)!.receiving === true && h.api.heartbeats.length >= 3);
    // One beat per change: busy → (still busy, no beat) → receiving.
    expect(h.api.heartbeats.map((b) => b.receiving)).toEqual([true, false, true]);
    expect(fake.accepts.length).toBe(4);
  }, 20_000);
});

describe('lock renewal (item 4)', () => {
  it('keeps renewing through transient errors and stops only on real lock loss; the run still reports its outcome', async () => {
    const fake = new FakeServiceBusClient();
    const job_id = newJobId();
    let first: FakeSession | undefined;
    fake.onSession = (s) => {
      if (first) return;
      first = s;
      s.script.receive.push([sbMessage({ job_id, epoch: 2 }, { messageId: `${job_id}:2`, sessionId: M })]);
      s.script.renew.push(settleTimeout(), afterRetries(settleTimeout(), settleTimeout()), new Date(Date.now() + 60_000), settleTimeout());
    };
    const h = harness(fake, { lockRenewMs: 15 });
    await h.agent.start();
    await until('five renewals', () => (first?.calls.renew ?? 0) >= 5);
    expect(logged(h, 'dispatch lock renewal failed; retrying').map((l) => l.failures)).toEqual([1, 2, 1]);
    expect(logged(h, 'dispatch lock lost; the run continues (fenced by its epoch)')).toHaveLength(0);
    // Now the broker takes the lock away for real.
    first!.sdkClosed = true;
    await until('lock loss noticed', () => logged(h, 'dispatch lock lost; the run continues (fenced by its epoch)').length === 1);
    const renewals = first!.calls.renew;
    await sleep(150); // ten renewal intervals
    expect(first!.calls.renew).toBe(renewals);
    h.finishRuns();
    await until('the outcome', () => h.api.events.find((e) => e.event.type === 'succeeded'));
    expect(h.api.events.filter((e) => e.event.type === 'failed')).toEqual([]);
  }, 20_000);
});

describe('a redelivered copy while the original is still claiming (item 5)', () => {
  it('is dropped without failing the live attempt', async () => {
    const fake = new FakeServiceBusClient();
    const job_id = newJobId();
    const msg = (deliveryCount: number) => sbMessage({ job_id, epoch: 5 }, { messageId: `${job_id}:5`, deliveryCount, sessionId: M });
    let n = 0;
    fake.onSession = (s) => {
      n++;
      if (n === 1) {
        // The original arrives; then the broker drops the link (lock lost) and the session comes back with a copy.
        s.script.receive.push([msg(0)], () => {
          s.sdkClosed = true;
          throw sessionLockLost(M);
        });
      } else if (n === 2) {
        s.script.receive.push([msg(1)]);
      }
    };
    const h = harness(fake);
    let grantOriginal: () => void = () => undefined;
    h.api.claimAnswers.push(
      // The original's claim is slow (the API is retrying): it is still in its claiming phase when the copy arrives.
      () => new Promise((r) => (grantOriginal = () => r(granted(job_id, 5)))),
      // The copy's claim: the attempt is already running on this machine.
      async () => ({ ok: false, status: 409, code: 'conflict', message: 'the job is running (epoch 5)', details: { status: 'running', epoch: 5 } }),
    );
    await h.agent.start();
    await until('the copy dropped', () => h.agent.stats.runs.find((r) => r.kind === 'dropped'));
    expect(h.api.claims).toHaveLength(2);
    // Before the fix the copy reported the live attempt failed ("the agent lost this attempt"), using up an attempt.
    expect(h.api.events.filter((e) => e.event.type === 'failed')).toEqual([]);
    expect(fake.sessions[1]!.calls.complete).toHaveLength(1);
    grantOriginal();
    h.finishRuns();
    await until('the original reported', () => h.api.events.find((e) => e.event.type === 'succeeded'));
    expect(h.executions).toBe(1);
    expect(h.api.events.filter((e) => e.event.type === 'failed')).toEqual([]);
  }, 20_000);
});

describe('a run whose executor backend went away', () => {
  it('spends the attempt, and reports the failure only after the heartbeat saying the machine is unhealthy has landed', async () => {
    const fake = new FakeServiceBusClient();
    const job_id = newJobId();
    let given = false;
    fake.onSession = (s) => {
      if (given) return;
      given = true;
      s.script.receive.push([sbMessage({ job_id, epoch: 3 }, { messageId: `${job_id}:3`, sessionId: M })]);
    };
    const reason = 'ComfyUI went away mid-run: its WebSocket closed (code 1006); the prompt is lost with it';
    const h = harness(fake, { outcome: { status: 'failed', retryable: true, backendLost: true, reason } });
    await h.agent.start();
    await until('the run started', () => h.executions === 1);
    h.api.heartbeatDelayMs = 300; // the unhealthy beat is slow to land; the failure report must wait for it
    h.finishRuns();
    await until('the failure reported', () => h.api.events.find((e) => e.event.type === 'failed'));
    const failed = h.api.events.find((e) => e.event.type === 'failed')!.event;
    expect(failed).toMatchObject({ type: 'failed', epoch: 3, retryable: true, reason });
    expect(failed).not.toHaveProperty('handback'); // the job may have killed the backend: its attempt is spent
    const beat = h.api.answered.indexOf(`heartbeat ${reason}`);
    expect(beat, h.api.answered.join(' | ')).toBeGreaterThan(-1);
    expect(beat).toBeLessThan(h.api.answered.indexOf('event failed'));
  }, 20_000);
});

// One job's trace end to end, and the metrics it moves. The Functions app runs in this process (the dev host over the
// built triggers) with the OpenTelemetry SDK's InMemorySpanExporter; a real agent child process exports its spans
// and metrics over OTLP/HTTP (JSON) to a receiver this test runs. Two jobs with the same LoRA on one machine: the
// first downloads (all_misses), the second is a cache hit (all_hits).
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { NodeTracerProvider } from '@opentelemetry/sdk-trace-node';
import { InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiClient } from '../../api-client/index.js';
import { issueDevToken } from '../../functions/core/auth.js';
import { AzureClients } from '../../functions/adapters/azure-clients.js';
import { loadConfig } from '../../functions/core/config.js';
import { rootLogger } from '../../functions/core/logger.js';
import { provisionLocal } from '../../local/stack.js';
import { readRoutePrefix, startDevHost, type DevHost } from '../../local/dev-host.js';
import { repoRoot } from '../../local/settings.js';
import { makeSafetensors } from '../../testkit/safetensors.js';
import { until } from '../support/helpers.js';
import { testSettings, type TestHost } from '../support/stack.js';
import { startTestFleet, type TestFleet } from '../support/test-agents.js';
import { FAST_SETTINGS, submitJob, uploadUserLora, waitTerminal } from './helpers.js';

interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  startTimeUnixNano: string | number;
  endTimeUnixNano: string | number;
  attributes?: { key: string; value: Record<string, unknown> }[];
  events?: { name: string; attributes?: { key: string; value: Record<string, unknown> }[] }[];
}

/** One span from either side, in one shape. */
interface SeenSpan {
  side: 'functions' | 'agent';
  name: string;
  traceId: string;
  spanId: string;
  parentId: string | undefined;
  startNs: bigint;
  endNs: bigint;
  attrs: Record<string, unknown>;
  events: string[];
}

const memory = new InMemorySpanExporter();
const agentSpans: OtlpSpan[] = [];
const agentMetrics: Map<string, number> = new Map();
let receiver: Server;
let receiverUrl: string;
let host: DevHost;
let clients: AzureClients;
let fleet: TestFleet;
let t: TestHost;

const otlpValue = (v: Record<string, unknown>): unknown => v.stringValue ?? (v.intValue !== undefined ? Number(v.intValue) : undefined) ?? v.doubleValue ?? v.boolValue;
const hexId = (id: string | undefined): string | undefined => (id === undefined || id === '' ? undefined : /^[0-9a-f]+$/.test(id) ? id : Buffer.from(id, 'base64').toString('hex'));
const hrNs = (t: [number, number]): bigint => BigInt(t[0]) * 1_000_000_000n + BigInt(t[1]);

function fromMemory(s: ReadableSpan): SeenSpan {
  return {
    side: 'functions',
    name: s.name,
    traceId: s.spanContext().traceId,
    spanId: s.spanContext().spanId,
    parentId: s.parentSpanContext?.spanId,
    startNs: hrNs(s.startTime),
    endNs: hrNs(s.endTime),
    attrs: { ...s.attributes },
    events: s.events.map((e) => e.name),
  };
}

function fromOtlp(s: OtlpSpan): SeenSpan {
  return {
    side: 'agent',
    name: s.name,
    traceId: hexId(s.traceId)!,
    spanId: hexId(s.spanId)!,
    parentId: hexId(s.parentSpanId),
    startNs: BigInt(s.startTimeUnixNano),
    endNs: BigInt(s.endTimeUnixNano),
    attrs: Object.fromEntries((s.attributes ?? []).map((a) => [a.key, otlpValue(a.value)])),
    events: (s.events ?? []).map((e) => e.name),
  };
}

/** Every span of the job's trace seen so far (both sides). */
function traceOf(jobId: string): SeenSpan[] {
  const fn = memory.getFinishedSpans().map(fromMemory);
  const agent = agentSpans.map(fromOtlp);
  const all = [...fn, ...agent];
  const root = all.find((s) => s.name === 'job.submit' && s.attrs['lora_router.job.id'] === jobId);
  if (!root) return [];
  return all.filter((s) => s.traceId === root.traceId).sort((a, b) => (a.startNs < b.startNs ? -1 : a.startNs > b.startNs ? 1 : 0));
}

beforeAll(async () => {
  const settings = testSettings({ ...FAST_SETTINGS, SCHEDULER_POLICY: 'affinity' });
  delete process.env.OTEL_EXPORTER_OTLP_ENDPOINT;
  delete process.env.APPLICATIONINSIGHTS_CONNECTION_STRING;
  Object.assign(process.env, settings); // the in-process host's services read the process environment
  await provisionLocal(settings);
  new NodeTracerProvider({ spanProcessors: [new SimpleSpanProcessor(memory)] }).register();

  receiver = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      try {
        const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>;
        if (req.url === '/v1/traces') {
          for (const rs of (body.resourceSpans ?? []) as { scopeSpans: { spans: OtlpSpan[] }[] }[]) for (const ss of rs.scopeSpans) agentSpans.push(...ss.spans);
        } else if (req.url === '/v1/metrics') {
          type Point = { asInt?: string | number; asDouble?: number };
          for (const rm of (body.resourceMetrics ?? []) as { scopeMetrics: { metrics: { name: string; sum?: { dataPoints: Point[] }; gauge?: { dataPoints: Point[] } }[] }[] }[]) {
            for (const sm of rm.scopeMetrics) {
              for (const m of sm.metrics) {
                const points = m.sum?.dataPoints ?? m.gauge?.dataPoints ?? [];
                agentMetrics.set(m.name, points.reduce((a, p) => a + Number(p.asInt ?? p.asDouble ?? 0), 0));
              }
            }
          }
        }
        res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      } catch {
        res.writeHead(400).end();
      }
    });
  });
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', () => r()));
  receiverUrl = `http://127.0.0.1:${(receiver.address() as { port: number }).port}`;

  const root = repoRoot();
  clients = new AzureClients(loadConfig(settings));
  host = await startDevHost({
    port: 0,
    triggersDir: join(root, 'dist/functions/triggers'),
    routePrefix: readRoutePrefix(join(root, 'host.json')),
    timers: true,
    blobWatch: { service: clients.blobService, containers: [settings.USER_LORA_CONTAINER!, settings.SHARED_LORA_CONTAINER!] },
    log: rootLogger.child({ component: 'dev-host' }),
    settings,
  });
  const apiUrl = `${host.url}/api`;
  t = {
    settings,
    host: undefined as unknown as TestHost['host'],
    apiUrl,
    anonymous: new ApiClient({ baseUrl: apiUrl }),
    as: async (subject, role = 'user') => new ApiClient({ baseUrl: apiUrl, token: await issueDevToken(settings.AUTH_DEV_SECRET!, subject, role) }),
    clients,
    stop: async () => {},
  };
  fleet = await startTestFleet(t, 1, {
    prefix: 'otel',
    env: { TELEMETRY_EXPORTER: 'otlp', OTEL_EXPORTER_OTLP_ENDPOINT: receiverUrl, OTEL_METRIC_EXPORT_INTERVAL: '1000' },
  });
});

afterAll(async () => {
  await fleet?.stop();
  await host?.close();
  await clients?.close();
  await new Promise<void>((r) => (receiver ? receiver.close(() => r()) : r()));
});

describe('one job, one trace; the metrics move', () => {
  it('traces a cache-hit job from submit to outcome across the Functions app and the agent, and counts it in the series', async () => {
    const alice = await t.as('alice');
    const bob = await t.as('bob');
    const admin = await t.as('ops', 'admin');
    const content = makeSafetensors({ dataBytes: 1024 * 1024, seed: 16 });
    const lora = await uploadUserLora(t, alice, 'alice', content, 'traced.safetensors');

    const first = await submitJob(alice, { user: [lora.key] });
    expect((await waitTerminal(alice, first, 60_000)).status).toBe('succeeded');
    const second = await submitJob(alice, { user: [lora.key] });
    const done = await waitTerminal(alice, second, 60_000);
    expect(done.status).toBe('succeeded');
    expect(done.cache.hit_loras).toEqual([lora.key]);

    // The agent's spans arrive by OTLP within its batch delay; wait for the whole tree.
    const want = ['job.submit', 'job.place', 'job.dispatch', 'job.run', 'job.claim', 'job.claim.accept', 'lora.acquire', 'job.started', 'job.execute', 'job.report', 'job.outcome'];
    await until('every span of the second job', () => want.every((n) => traceOf(second).some((s) => s.name === n)), 30_000, 150, () =>
      JSON.stringify(traceOf(second).map((s) => s.name)),
    );
    const spans = traceOf(second);
    const one = (name: string) => {
      const found = spans.filter((s) => s.name === name);
      expect(found, `${name}: ${JSON.stringify(spans.map((s) => s.name))}`).toHaveLength(1);
      return found[0]!;
    };
    const [submit, place, dispatch, run, claim, accept, acquire, started, execute, report, outcome] = want.map(one) as SeenSpan[];
    expect(new Set(spans.map((s) => s.traceId)).size).toBe(1);
    expect(new Set(spans.map((s) => s.side))).toEqual(new Set(['functions', 'agent']));

    // The tree: who is whose parent, across both processes.
    expect(submit!.parentId).toBeUndefined();
    expect(place!.parentId).toBe(submit!.spanId);
    expect(dispatch!.parentId).toBe(place!.spanId);
    expect(run!.parentId).toBe(dispatch!.spanId);
    for (const child of [claim!, acquire!, execute!, report!]) expect(child.parentId).toBe(run!.spanId);
    expect(accept!.parentId).toBe(claim!.spanId);
    expect(started!.parentId).toBe(submit!.spanId);
    expect(outcome!.parentId).toBe(submit!.spanId);

    // In order (one machine, one clock).
    const order = [submit!, place!, dispatch!, run!, claim!, accept!, acquire!, started!, execute!, report!, outcome!];
    for (let i = 1; i < order.length; i++) expect(order[i]!.startNs >= order[i - 1]!.startNs, `${order[i]!.name} after ${order[i - 1]!.name}`).toBe(true);
    expect(started!.startNs >= acquire!.endNs).toBe(true);

    // What the spans say.
    expect(place!.attrs['lora_router.placement.policy']).toBe('affinity');
    expect(typeof place!.attrs['lora_router.placement.score']).toBe('number');
    expect(Object.keys(place!.attrs).some((k) => k.startsWith('lora_router.placement.breakdown.'))).toBe(true);
    expect(place!.attrs['lora_router.machine.id']).toBe('otel-1');
    expect(acquire!.attrs['lora_router.cache.hits']).toBe(1);
    expect(acquire!.attrs['lora_router.cache.misses']).toBe(0);
    expect(acquire!.events).toEqual(['lora.hit']);
    expect(started!.attrs['lora_router.cache.state']).toBe('all_hits');
    expect(outcome!.attrs['lora_router.job.outcome']).toBe('succeeded');
    expect(report!.attrs['lora_router.job.outcome']).toBe('succeeded');

    // The first job downloaded: its acquire span says so with the file's size.
    const firstAcquire = traceOf(first).find((s) => s.name === 'lora.acquire');
    expect(firstAcquire?.events).toEqual(['lora.miss']);
    expect(firstAcquire?.attrs['lora_router.cache.bytes_downloaded']).toBe(content.length);

    // The time series: one start in each bucket, bytes that match the agent's own counters.
    type Series = {
      scope: string;
      totals: { started: number; hits: number; misses: number; bytes_downloaded: number };
      start_latency: Record<string, { count: number; p50_s: number | null } | string>[];
      machines: { machine_id: string; bytes_downloaded: number }[];
      top_loras: { by_requests: { key: string; requests: number; bytes: number }[] };
      egress_per_day: { bytes: number; target_bytes: number }[];
      score_histogram: { count: number }[];
    };
    const startsIn = (s: Series, state: string) => s.start_latency.reduce((a, p) => a + ((p[state] as { count: number }).count ?? 0), 0);
    let fleetSeries: Series | undefined;
    let flat: Record<string, { at: string; value: number }[]> = {};
    await until(
      'the heartbeat delta reaching the fleet rollup',
      async () => {
        const body = await admin.get<{ timeseries: Series; series: Record<string, { at: string; value: number }[]>; jobs_by_status: Record<string, number> }>('metrics?since=15m&step=1m');
        fleetSeries = body.timeseries;
        flat = body.series;
        expect(body.jobs_by_status.succeeded).toBe(2); // today's fields stay
        const m = fleetSeries.machines.find((x) => x.machine_id === 'otel-1');
        return fleetSeries.totals.bytes_downloaded === content.length && m?.bytes_downloaded === content.length;
      },
      20_000,
      250,
      () => JSON.stringify(fleetSeries?.totals),
    );
    const s = fleetSeries!;
    expect(s.scope).toBe('fleet');
    expect(s.totals.started).toBe(2);
    expect(startsIn(s, 'all_hits')).toBe(1);
    expect(startsIn(s, 'all_misses')).toBe(1);
    expect(s.totals.hits).toBe(1);
    expect(s.totals.misses).toBe(1);
    expect(s.top_loras.by_requests[0]).toEqual({ key: lora.key, requests: 2, bytes: content.length });
    expect(s.egress_per_day.reduce((a, d) => a + d.bytes, 0)).toBe(content.length);
    expect(s.egress_per_day[0]!.target_bytes).toBe(100 * 1000 ** 3);
    expect(s.score_histogram.reduce((a, b) => a + b.count, 0)).toBe(2);
    // The plain line view (the web app's Fleet page draws these): the same numbers.
    expect(flat.jobs_started!.reduce((a, p) => a + p.value, 0)).toBe(2);
    expect(flat.bytes_downloaded!.reduce((a, p) => a + p.value, 0)).toBe(content.length);
    expect(flat.start_latency_p95_all_hits_s!.length).toBe(1);

    // The agent's exported cache metrics agree with its heartbeat counters.
    // Wait for an export that counts both jobs: one taken between the two lookups already has the final byte count.
    await until('agent OTLP metrics', () => agentMetrics.get('lora_router.lora.bytes_downloaded') === content.length && agentMetrics.get('lora_router.lora.lookups') === 2, 20_000, 150, () =>
      JSON.stringify(Object.fromEntries(agentMetrics)),
    );
    expect(agentMetrics.get('lora_router.lora.lookups')).toBe(2);

    // Tenant views: alice sees her two starts; bob sees none of them.
    const mine = await alice.get<{ scope: string; timeseries: Series }>('metrics?since=15m&step=1m');
    expect(mine.scope).toBe('tenant');
    expect(mine.timeseries.totals.started).toBe(2);
    expect(mine.timeseries.machines).toEqual([]);
    const theirs = await bob.get<{ timeseries: Series }>('metrics?since=15m&step=1m');
    expect(theirs.timeseries.totals.started).toBe(0);
    expect(theirs.timeseries.top_loras.by_requests).toEqual([]);
  });

  it('answers bad since/step with a 400 naming the problem', async () => {
    const admin = await t.as('ops', 'admin');
    for (const q of ['since=yesterday', 'since=10m&step=7s', 'since=30d&step=1m', 'since=1h&step=1m&top=0']) {
      const res = await admin.raw('GET', `metrics?${q}`);
      expect(res.status, q).toBe(400);
      const body = (await res.json()) as { error: { code: string; message: string } };
      expect(body.error.message.length).toBeGreaterThan(5);
    }
  });
});

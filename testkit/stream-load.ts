// Many open event streams and many multipart uploads at once against a running local stack, while the host's memory
// is sampled. Used by bench/stream-load.ts. Every answer is counted by status; a 5xx or a network error is a failure.
//   SSE: `streams` streams over ceil(streams / perTenant) tenants (one pending job each), held open for `holdMs`,
//        then one stream more per tenant, which the per-tenant cap must refuse with 429.
//   Uploads: `uploads` tenants each POST one valid safetensors file of `uploadBytes` to /user-loras/upload at once.
import { issueDevToken } from '../functions/core/auth.js';
import { makeSafetensors } from './safetensors.js';

export interface StreamLoadOptions {
  apiUrl: string;
  devSecret: string;
  streams: number;
  perTenant: number;
  holdMs: number;
  uploads: number;
  uploadBytes: number;
  /** The host's resident memory now, in MiB (sampled every 100 ms). */
  rssMiB: () => number;
}

export interface PhaseReport {
  statuses: Record<string, number>;
  networkErrors: number;
  /** The first few network errors, with their causes. */
  errorSamples: string[];
  serverErrors: number;
  rssBeforeMiB: number;
  rssPeakMiB: number;
  seconds: number;
}

export interface StreamLoadReport {
  sse: PhaseReport & { opened: number; unanswered: number; bytesReceived: number; overCapStatuses: Record<string, number> };
  uploads: PhaseReport & { bytesEach: number };
}

function sampler(rssMiB: () => number) {
  const before = rssMiB();
  let peak = before;
  const timer = setInterval(() => {
    peak = Math.max(peak, rssMiB());
  }, 100);
  return {
    before,
    stop: () => {
      clearInterval(timer);
      return Math.max(peak, rssMiB());
    },
  };
}

const describe = (err: unknown): string => {
  const e = err as Error & { cause?: { code?: string; message?: string } };
  return `${e?.message ?? String(err)}${e?.cause ? ` (${e.cause.code ?? ''} ${e.cause.message ?? ''})` : ''}`;
};

const count = (m: Record<string, number>, status: number) => {
  m[status] = (m[status] ?? 0) + 1;
};

export async function runStreamLoad(o: StreamLoadOptions): Promise<StreamLoadReport> {
  const run = Math.random().toString(36).slice(2, 8);
  const tenantCount = Math.ceil(o.streams / o.perTenant);
  const tokens = await Promise.all(Array.from({ length: tenantCount }, (_, i) => issueDevToken(o.devSecret, `sse-${run}-${i}`, 'user')));
  const auth = (token: string) => ({ authorization: `Bearer ${token}` });
  // Jobs in the default pool stay pending (timers are off): their streams stay open.
  const jobs = await Promise.all(
    tokens.map(async (token) => {
      const res = await fetch(`${o.apiUrl}/jobs`, { method: 'POST', headers: { ...auth(token), 'content-type': 'application/json' }, body: JSON.stringify({ service_required: 'comfyui', payload: {} }) });
      if (res.status !== 201) throw new Error(`submitting a job: HTTP ${res.status} ${await res.text()}`);
      return ((await res.json()) as { job_id: string }).job_id;
    }),
  );

  // ---- SSE
  const sse: StreamLoadReport['sse'] = { statuses: {}, overCapStatuses: {}, networkErrors: 0, errorSamples: [], serverErrors: 0, rssBeforeMiB: 0, rssPeakMiB: 0, seconds: 0, opened: 0, unanswered: 0, bytesReceived: 0 };
  const abort = new AbortController();
  let s = sampler(o.rssMiB);
  sse.rssBeforeMiB = s.before;
  let t0 = performance.now();
  const open = async (i: number, into: Record<string, number>): Promise<void> => {
    const tenant = i % tenantCount;
    let answered = false;
    try {
      const res = await fetch(`${o.apiUrl}/jobs/${jobs[tenant]}/events`, { headers: { ...auth(tokens[tenant]!), accept: 'text/event-stream' }, signal: abort.signal });
      answered = true;
      count(into, res.status);
      if (res.status >= 500) sse.serverErrors++;
      if (res.status !== 200) return void (await res.body?.cancel());
      sse.opened++;
      for await (const chunk of res.body! as unknown as AsyncIterable<Uint8Array>) sse.bytesReceived += chunk.length;
    } catch (err) {
      if (!abort.signal.aborted) {
        sse.networkErrors++;
        if (sse.errorSamples.length < 5) sse.errorSamples.push(describe(err));
      }
      else if (!answered) sse.unanswered++;
      void err;
    }
  };
  const held = Array.from({ length: o.streams }, (_, i) => open(i, sse.statuses));
  // Hold once every stream has its answer (or after a minute on a very busy machine).
  const answeredAll = performance.now() + 60_000;
  while (Object.values(sse.statuses).reduce((a, b) => a + b, 0) < o.streams && performance.now() < answeredAll) await new Promise((r) => setTimeout(r, 100));
  await new Promise((r) => setTimeout(r, o.holdMs));
  // Every tenant is at its cap now: one more each must be refused.
  await Promise.all(Array.from({ length: tenantCount }, (_, i) => open(i, sse.overCapStatuses)));
  abort.abort();
  await Promise.all(held);
  sse.rssPeakMiB = s.stop();
  sse.seconds = +((performance.now() - t0) / 1000).toFixed(1);

  // ---- multipart uploads
  const uploads: StreamLoadReport['uploads'] = { statuses: {}, networkErrors: 0, errorSamples: [], serverErrors: 0, rssBeforeMiB: 0, rssPeakMiB: 0, seconds: 0, bytesEach: 0 };
  const file = makeSafetensors({ dataBytes: o.uploadBytes, seed: 18, metadata: { format: 'pt' } });
  uploads.bytesEach = file.length;
  const upTokens = await Promise.all(Array.from({ length: o.uploads }, (_, i) => issueDevToken(o.devSecret, `up-${run}-${i}`, 'user')));
  s = sampler(o.rssMiB);
  uploads.rssBeforeMiB = s.before;
  t0 = performance.now();
  await Promise.all(
    upTokens.map(async (token, i) => {
      const form = new FormData();
      form.append('file', new Blob([file]), `load-${i}.safetensors`);
      try {
        const res = await fetch(`${o.apiUrl}/user-loras/upload`, { method: 'POST', headers: auth(token), body: form });
        await res.arrayBuffer();
        count(uploads.statuses, res.status);
        if (res.status >= 500) uploads.serverErrors++;
      } catch (err) {
        uploads.networkErrors++;
        if (uploads.errorSamples.length < 5) uploads.errorSamples.push(describe(err));
      }
    }),
  );
  uploads.rssPeakMiB = s.stop();
  uploads.seconds = +((performance.now() - t0) / 1000).toFixed(1);
  return { sse, uploads };
}

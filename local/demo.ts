// `npm run demo`: drives the running local stack only through the public API. Two users upload LoRAs of varied sizes,
// an admin adds a shared one, then a stream of jobs with a skewed (Zipf-like) choice of LoRAs runs on the fleet.
// Prints a live line, then a final table: jobs done, cache hit rate, bytes downloaded, evictions, p50/p95
// submit→start (to the job's started_at: the agent's `started` report, LoRAs ready) and submit→claim (claimed_at),
// outputs, per machine. With the fleet on EXECUTOR=comfyui (npm start's default) every job is a ComfyUI
// workflow using its LoRAs, and one job's images are downloaded (sha256 checked) to show where they land.
import { mkdirSync, openAsBlob, readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { JobView, MachineView, UserLora, SharedLora } from '../contract/index.js';
import { ApiClient, resolveApiBase } from '../api-client/index.js';
import { issueDevToken } from '../functions/core/auth.js';
import { writeSafetensorsFile } from '../testkit/safetensors.js';
import { downloadOutputs, fetchOutputs } from '../cli/commands/outputs.js';
import { exampleWorkflow } from '../testkit/comfyui/workflow.js';
import { repoRoot, sampleSettings } from './settings.js';
import { breakdownLines, jobHops, readAgentEvents } from './demo-breakdown.js';

const { values } = parseArgs({
  options: {
    jobs: { type: 'string', default: '60' },
    rate: { type: 'string', default: '1' },
    seed: { type: 'string', default: '7' },
    'timeout-s': { type: 'string', default: '600' },
    // Print where submit→start went, hop by hop, for the slowest 10 % (job records + the agents' logs).
    breakdown: { type: 'boolean', default: false },
  },
});
const totalJobs = Number(values.jobs);
const ratePerSecond = Number(values.rate);
const root = repoRoot();
const stackFile = join(root, '.local', 'stack.json');
if (!existsSync(stackFile)) {
  process.stderr.write('No running stack (.local/stack.json missing). Start it first: npm start\n');
  process.exit(1);
}
const stackInfo = JSON.parse(readFileSync(stackFile, 'utf8')) as { agents?: { executor?: string }[] };
const comfyui = (stackInfo.agents ?? []).some((a) => a.executor === 'comfyui');
const secret = process.env.AUTH_DEV_SECRET ?? sampleSettings(root).AUTH_DEV_SECRET!;
const base = new ApiClient({ baseUrl: resolveApiBase(undefined, root) });
const users = ['alice', 'bob'] as const;
const clients: Record<string, ApiClient> = {};
for (const u of users) clients[u] = base.withToken(await issueDevToken(secret, `demo-${u}`, 'user'));
const admin = base.withToken(await issueDevToken(secret, 'demo-admin', 'admin'));

// Deterministic PRNG so two demo runs make the same files and the same job stream.
let state = Number(values.seed) >>> 0 || 1;
const rand = () => {
  state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
  return state / 2 ** 32;
};

const MB = 1024 * 1024;
const fmtBytes = (n: number) => (n >= 1024 * MB ? `${(n / 1024 / MB).toFixed(2)} GB` : `${(n / MB).toFixed(1)} MB`);
const dir = join(root, '.local', 'demo');
mkdirSync(dir, { recursive: true });

async function uploadFile(client: ApiClient, path: string, name: string, shared: boolean): Promise<string> {
  const form = new FormData();
  // Streamed from disk as it is sent: reading 64 MB into memory first kept the client busy for seconds on a loaded
  // machine, long enough for its idle keep-alive connection to be closed under it (EPIPE).
  form.set('file', await openAsBlob(path), name);
  const res = await client.raw('POST', shared ? 'shared-loras/upload' : 'user-loras/upload', { body: form });
  const body = (await res.json()) as { flat_file_id?: string; filename?: string; error?: { message: string } };
  if (res.status === 409 && shared) return name; // shared LoRA already there from an earlier demo run
  if (!res.ok) throw new Error(`upload ${name}: HTTP ${res.status} ${body.error?.message ?? ''}`);
  return shared ? (body.filename ?? name) : body.flat_file_id!;
}

interface DemoLora { owner: string | null; ref: { type: 'user'; flat_file_id: string } | { type: 'shared'; filename: string }; size: number }
const loras: DemoLora[] = [];

process.stdout.write(`API ${base.options.baseUrl}\n1/3 uploading LoRAs…\n`);
const sizesMb = [8, 12, 20, 32, 48, 64, 16, 24];
for (const [i, user] of users.entries()) {
  // Reuse this user's ready LoRAs from an earlier run rather than growing past the per-user quota.
  const existing = await clients[user]!.get<{ loras: UserLora[] }>('user-loras');
  const ready = existing.loras.filter((l) => l.status === 'ready');
  if (ready.length >= 4) {
    for (const l of ready.slice(0, 4)) loras.push({ owner: user, ref: { type: 'user', flat_file_id: l.id }, size: l.size_bytes });
    continue;
  }
  for (let k = 0; k < 4; k++) {
    const size = sizesMb[i * 4 + k]! * MB;
    const path = join(dir, `${user}-style-${k + 1}.safetensors`);
    if (!existsSync(path)) await writeSafetensorsFile(path, size, { seed: i * 10 + k + 1 });
    const id = await uploadFile(clients[user]!, path, `${user}-style-${k + 1}.safetensors`, false);
    loras.push({ owner: user, ref: { type: 'user', flat_file_id: id }, size });
    process.stdout.write(`  ${user}: ${id} (${fmtBytes(size)})\n`);
  }
}
const sharedName = 'demo-detail-tweaker.safetensors';
const sharedPath = join(dir, sharedName);
if (!existsSync(sharedPath)) await writeSafetensorsFile(sharedPath, 10 * MB, { seed: 99 });
await uploadFile(admin, sharedPath, sharedName, true);
const sharedList = await admin.get<{ loras: SharedLora[] }>('shared-loras');
const sharedSize = sharedList.loras.find((l) => l.filename === sharedName)?.size_bytes ?? 10 * MB;
loras.push({ owner: null, ref: { type: 'shared', filename: sharedName }, size: sharedSize });
process.stdout.write(`  shared: ${sharedName}\n`);

// Zipf(s=1) over each user's LoRAs: the first is hot, the last is cold.
function zipfPick<T>(items: T[]): T {
  const weights = items.map((_, i) => 1 / (i + 1));
  let r = rand() * weights.reduce((a, b) => a + b, 0);
  for (let i = 0; i < items.length; i++) {
    r -= weights[i]!;
    if (r <= 0) return items[i]!;
  }
  return items[items.length - 1]!;
}

// Agent counters live in each agent's cache database and survive restarts: report this run's share only.
const before = new Map((await admin.get<{ machines: MachineView[] }>('machines')).machines.map((m) => [m.machine_id, m.cache?.counters]));
const delta = (m: MachineView, key: 'bytes_downloaded' | 'evictions') => (m.cache?.counters[key] ?? 0) - (before.get(m.machine_id)?.[key] ?? 0);

process.stdout.write(`2/3 submitting ${totalJobs} jobs at ${ratePerSecond}/s…\n`);
const submitted: { id: string; user: string }[] = [];
const startedAt = Date.now();
const deadline = startedAt + Number(values['timeout-s']) * 1000;
const terminal = new Set(['succeeded', 'failed', 'cancelled']);
const views = new Map<string, JobView>();

async function refresh(): Promise<void> {
  for (const u of users) {
    const { jobs } = await clients[u]!.get<{ jobs: JobView[] }>('jobs');
    for (const j of jobs) if (submitted.some((s) => s.id === j.job_id)) views.set(j.job_id, j);
  }
}
function liveLine(): string {
  const all = [...views.values()];
  const count = (s: string) => all.filter((j) => j.status === s).length;
  const hits = all.reduce((a, j) => a + j.cache.hit_loras.length, 0);
  const misses = all.reduce((a, j) => a + j.cache.missing_loras.length, 0);
  const rate = hits + misses ? ((100 * hits) / (hits + misses)).toFixed(0) : '–';
  return `  t+${((Date.now() - startedAt) / 1000).toFixed(0)}s submitted ${submitted.length}/${totalJobs}  pending ${count('pending')}  assigned ${count('assigned')}  running ${count('running')}  succeeded ${count('succeeded')}  failed ${count('failed')}  hit rate ${rate}%`;
}

let lastPrint = 0;
for (let n = 0; n < totalJobs; n++) {
  const user = users[n % 2 === 0 || rand() < 0.3 ? 0 : 1]!;
  const own = loras.filter((l) => l.owner === user);
  const picks = new Map<string, DemoLora>();
  const first = zipfPick(own);
  picks.set(JSON.stringify(first.ref), first);
  if (rand() < 0.25) picks.set(JSON.stringify(loras[loras.length - 1]!.ref), loras[loras.length - 1]!);
  const refs = [...picks.values()].map((p) => (p.ref.type === 'user' ? p.ref.flat_file_id : p.ref.filename));
  const steps = 16 + Math.floor(rand() * 24); // × 50 ms per step in the local ComfyUI double: ~0.8-2 s, like the command jobs
  const payload = comfyui
    ? { workflow: exampleWorkflow({ loras: refs, seed: n, steps, width: 256, height: 256, prompt: `demo ${n}: a lighthouse at dusk`, prefix: `demo-${n}` }) }
    : { prompt: `demo ${n}`, duration_ms: 800 + Math.floor(rand() * 1200) };
  const job = await clients[user]!.post<{ job_id: string }>('jobs', {
    service_required: 'image-gen',
    payload,
    requirements: { loras: [...picks.values()].map((p) => p.ref) },
  }, { 'Idempotency-Key': `demo-${values.seed}-${startedAt}-${n}` });
  submitted.push({ id: job.job_id, user });
  if (Date.now() - lastPrint > 2000) {
    await refresh();
    process.stdout.write(`${liveLine()}\n`);
    lastPrint = Date.now();
  }
  await new Promise((r) => setTimeout(r, 1000 / ratePerSecond));
}

process.stdout.write('3/3 waiting for every job to finish…\n');
for (;;) {
  await refresh();
  process.stdout.write(`${liveLine()}\n`);
  if (submitted.every((s) => terminal.has(views.get(s.id)?.status ?? ''))) break;
  if (Date.now() > deadline) {
    process.stderr.write('timed out waiting for jobs\n');
    break;
  }
  await new Promise((r) => setTimeout(r, 2000));
}

const jobs = submitted.map((s) => views.get(s.id)).filter((j): j is JobView => Boolean(j));
const { machines } = await admin.get<{ machines: MachineView[] }>('machines');
const quantile = (xs: number[], q: number) => {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
};
const startDelays = jobs.filter((j) => j.started_at).map((j) => Date.parse(j.started_at!) - Date.parse(j.created_at));
const claimDelays = jobs.filter((j) => j.claimed_at).map((j) => Date.parse(j.claimed_at!) - Date.parse(j.created_at));
const hits = jobs.reduce((a, j) => a + j.cache.hit_loras.length, 0);
const misses = jobs.reduce((a, j) => a + j.cache.missing_loras.length, 0);
const done = jobs.filter((j) => j.status === 'succeeded').length;

const rows = machines.map((m) => {
  const mine = jobs.filter((j) => j.machine_id === m.machine_id);
  const c = m.cache?.counters;
  return {
    machine: m.machine_id,
    jobs: mine.length,
    hits: mine.reduce((a, j) => a + j.cache.hit_loras.length, 0),
    misses: mine.reduce((a, j) => a + j.cache.missing_loras.length, 0),
    downloaded: c ? fmtBytes(delta(m, 'bytes_downloaded')) : '–',
    evictions: c ? delta(m, 'evictions') : 0,
    cache: m.cache ? `${fmtBytes(m.cache.used_bytes)} / ${fmtBytes(m.cache.budget_bytes)}` : '–',
  };
});
const totalDownloaded = machines.reduce((a, m) => a + delta(m, 'bytes_downloaded'), 0);
const totalEvictions = machines.reduce((a, m) => a + delta(m, 'evictions'), 0);

process.stdout.write('\nDemo summary\n');
process.stdout.write(`  jobs done          ${done} of ${jobs.length} succeeded (${jobs.length - done} other)\n`);
process.stdout.write(`  cache hit rate     ${hits + misses ? ((100 * hits) / (hits + misses)).toFixed(1) : '–'}% (${hits} hits, ${misses} misses, per required LoRA)\n`);
process.stdout.write(`  bytes downloaded   ${fmtBytes(totalDownloaded)} (fleet total, this run)\n`);
process.stdout.write(`  evictions          ${totalEvictions}\n`);
const p50p95 = (xs: number[]) => `p50 ${(quantile(xs, 0.5) / 1000).toFixed(2)} s, p95 ${(quantile(xs, 0.95) / 1000).toFixed(2)} s`;
process.stdout.write(`  submit→start       ${p50p95(startDelays)} (to started_at: LoRAs ready, the run begins; as GET /api/metrics)\n`);
process.stdout.write(`  submit→claim       ${p50p95(claimDelays)} (to claimed_at: the agent's claim accepted, LoRAs not yet fetched)\n`);
const withOutputs = jobs.filter((j) => j.outputs.length > 0);
const outputFiles = withOutputs.reduce((a, j) => a + j.outputs.length, 0);
const outputBytes = withOutputs.reduce((a, j) => a + j.outputs.reduce((b, o) => b + o.size_bytes, 0), 0);
process.stdout.write(`  outputs            ${outputFiles} files, ${fmtBytes(outputBytes)} (${withOutputs.length} jobs with outputs)\n`);
const sample = withOutputs[0];
if (sample) {
  const owner = submitted.find((s) => s.id === sample.job_id)!.user;
  const files = await downloadOutputs(await fetchOutputs(clients[owner]!, sample.job_id), join(dir, 'outputs', sample.job_id));
  process.stdout.write(`  one image          ${files[0]!.path} (${files[0]!.size_bytes} bytes, sha256 matches the job)\n`);
  process.stdout.write(`                     or: LORA_ROUTER_TOKEN=$(npx lora-router dev-token demo-${owner}) npx lora-router outputs ${sample.job_id} --download ./out\n`);
}
process.stdout.write('\n');
console.table(rows);
if (values.breakdown) {
  process.stdout.write('\nsubmit→start, hop by hop (--breakdown)\n');
  const hops = jobHops(jobs, readAgentEvents(join(root, '.local', 'fleet')));
  for (const line of breakdownLines(hops)) process.stdout.write(`${line}\n`);
}

// The same run as GET /api/metrics sees it (rollups written as jobs start and heartbeats arrive): the numbers must agree.
// The rollups are per minute, so the window opens at the minute this run started and may hold the end of an earlier run
// (a second demo within the minute): each check is "at least what this run did", never "exactly".
type Series = { totals: { started: number; hits: number; misses: number; bytes_downloaded: number }; start_latency: Record<string, unknown>[] };
const since = new Date(Math.floor(startedAt / 60_000) * 60_000).toISOString();
const allHitJobs = jobs.filter((j) => j.started_at && j.cache.hit_loras.length > 0 && j.cache.missing_loras.length === 0).length;
const inBucket = (s: Series, state: string) => s.start_latency.reduce((a, p) => a + ((p[state] as { count: number } | undefined)?.count ?? 0), 0);
let series: Series | undefined;
let agentBytes = totalDownloaded;
const checks = (s: Series) => [
  ['jobs started', s.totals.started >= jobs.filter((j) => j.started_at).length, `${s.totals.started} ≥ ${jobs.filter((j) => j.started_at).length}`],
  ['"all hits" bucket', inBucket(s, 'all_hits') >= allHitJobs, `${inBucket(s, 'all_hits')} ≥ ${allHitJobs} jobs whose LoRAs were all cached`],
  ['bytes ≥ agents\' counters', s.totals.bytes_downloaded >= agentBytes, `${fmtBytes(s.totals.bytes_downloaded)} ≥ ${fmtBytes(agentBytes)} the agents counted in this run`],
] as const;
for (let i = 0; i < 20; i++) {
  series = (await admin.get<{ timeseries: Series }>(`metrics?since=${encodeURIComponent(since)}&step=1m`)).timeseries;
  agentBytes = (await admin.get<{ machines: MachineView[] }>('machines')).machines.reduce((a, m) => a + delta(m, 'bytes_downloaded'), 0);
  if (checks(series).every((c) => c[1])) break;
  await new Promise((r) => setTimeout(r, 1000)); // the last heartbeat deltas land within a heartbeat
}
process.stdout.write('\nGET /api/metrics for this run\n');
for (const [what, ok, detail] of checks(series!)) process.stdout.write(`  ${ok ? 'ok  ' : 'FAIL'} ${what.padEnd(26)} ${detail}\n`);
const metricsOk = checks(series!).every((c) => c[1]);
process.exit(done === jobs.length && metricsOk ? 0 : 1);

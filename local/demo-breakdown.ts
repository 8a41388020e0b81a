// `npm run demo -- --breakdown`: where submit→start goes, hop by hop, for the slowest 10 % of a demo run's jobs (and
// the mean over all jobs beside it). Sources, all on this machine (one clock):
//   the job record (API): created_at (submit stored), assigned_at (the placement's CAS), claimed_at (the claim's CAS:
//   the job is `running` from here, before its LoRAs are fetched), started_at (the CAS of the agent's `started` report,
//   sent once the LoRAs are ready: the run's start, the same moment GET /api/metrics and the simulator count)
//   the agents' logs (.local/fleet/<machine>/agent.log): "dispatch received", "claimed", "LoRAs ready" for this job's
//   epoch, and for the job that ran before it on the same machine "executor finished" and "outcome reported".
// A job that waited for a slot has its placement hop split in three: the run ahead was still executing (queueing,
// set by the workload and the fleet), that run's outputs upload + outcome report, and from that report to this job's
// assignment (the agent's heartbeat and the scheduler pass it triggers).
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { JobView } from '../contract/index.js';

interface AgentEvent {
  machine: string;
  jobId: string;
  epoch: number;
  msg: string;
  atMs: number;
}

/** The hops of one job's submit→start, in ms (undefined: the sources did not say). */
export interface JobHops {
  jobId: string;
  machine: string;
  /** created → started_at (the agent's `started` report: LoRAs ready, the run begins): the demo's submit→start. */
  totalMs: number;
  /** created → claimed_at (the claim accepted; the slot is held from here): the demo's submit→claim. */
  toClaimMs?: number;
  /** created → assigned, split for a job that waited for the run ahead on its machine. */
  placeMs: number;
  aheadExecutingMs?: number;
  aheadReportingMs?: number;
  aheadReportToPlacedMs?: number;
  /** assigned → the agent's receive returned it (dispatch send + queue delivery + the agent's receive loop). */
  dispatchToReceivedMs?: number;
  /** received → claimed_at (the claim's round trip up to the API's CAS). */
  claimMs?: number;
  /** claimed_at → started_at: the LoRAs fetched (or found) and the `started` report's trip to the API's CAS. */
  claimToStartMs?: number;
  /** Within claimToStartMs, by the agent's log: claimed → LoRAs ready (cache hit, or download + verification). */
  lorasMs?: number;
  missing: number;
}

const WANTED = new Set(['dispatch received', 'claimed', 'LoRAs ready', 'executor finished', 'outcome reported']);

export function readAgentEvents(fleetDir: string): AgentEvent[] {
  const out: AgentEvent[] = [];
  if (!existsSync(fleetDir)) return out;
  for (const machine of readdirSync(fleetDir)) {
    const file = join(fleetDir, machine, 'agent.log');
    if (!existsSync(file)) continue;
    for (const line of readFileSync(file, 'utf8').split('\n')) {
      if (!line.startsWith('{')) continue;
      let rec: { msg?: string; job_id?: string; epoch?: number; time?: string | number };
      try {
        rec = JSON.parse(line) as typeof rec;
      } catch {
        continue;
      }
      if (!rec.msg || !WANTED.has(rec.msg) || !rec.job_id || rec.epoch === undefined || rec.time === undefined) continue;
      const atMs = typeof rec.time === 'number' ? rec.time : Date.parse(rec.time);
      if (Number.isFinite(atMs)) out.push({ machine, jobId: rec.job_id, epoch: rec.epoch, msg: rec.msg, atMs });
    }
  }
  return out;
}

export function jobHops(jobs: JobView[], events: AgentEvent[]): JobHops[] {
  const at = new Map<string, number>();
  const key = (jobId: string, epoch: number, msg: string) => `${jobId}:${epoch}:${msg}`;
  for (const e of events) if (!at.has(key(e.jobId, e.epoch, e.msg))) at.set(key(e.jobId, e.epoch, e.msg), e.atMs);
  // Runs per machine by the time their executor finished: the run "ahead" of a job is the last one to finish before
  // the job was assigned there.
  const finishes = events.filter((e) => e.msg === 'executor finished');
  const out: JobHops[] = [];
  for (const j of jobs) {
    if (!j.started_at || !j.assigned_at || !j.machine_id) continue;
    const created = Date.parse(j.created_at);
    const assigned = Date.parse(j.assigned_at);
    const started = Date.parse(j.started_at);
    const claimedAt = j.claimed_at ? Date.parse(j.claimed_at) : undefined;
    const t = (msg: string) => at.get(key(j.job_id, j.epoch, msg));
    const received = t('dispatch received');
    const claimed = t('claimed');
    const ready = t('LoRAs ready');
    const h: JobHops = {
      jobId: j.job_id,
      machine: j.machine_id,
      totalMs: started - created,
      placeMs: assigned - created,
      missing: j.cache.missing_loras.length,
    };
    if (received !== undefined) h.dispatchToReceivedMs = received - assigned;
    if (claimedAt !== undefined) {
      h.toClaimMs = claimedAt - created;
      h.claimToStartMs = started - claimedAt;
      if (received !== undefined) h.claimMs = claimedAt - received;
    }
    if (claimed !== undefined && ready !== undefined) h.lorasMs = ready - claimed;
    const ahead = finishes
      .filter((e) => e.machine === j.machine_id && e.jobId !== j.job_id && e.atMs <= assigned)
      .sort((a, b) => b.atMs - a.atMs)[0];
    // The agent logs "outcome reported" once the API answered; the API may place the next job before it answers.
    const aheadReported = ahead ? Math.min(assigned, at.get(key(ahead.jobId, ahead.epoch, 'outcome reported')) ?? assigned) : undefined;
    // Only when the run ahead still held the slot at submit (executing, or its outcome not yet in): else no wait for it.
    if (ahead && aheadReported !== undefined && aheadReported > created) {
      h.aheadExecutingMs = Math.max(0, ahead.atMs - created);
      h.aheadReportingMs = aheadReported - Math.max(ahead.atMs, created);
      h.aheadReportToPlacedMs = assigned - aheadReported;
    }
    out.push(h);
  }
  return out;
}

const COLUMNS: [keyof JobHops, string, string][] = [
  ['totalMs', 'total', 'submit→start (started_at: run began)'],
  ['toClaimMs', 'toclaim', 'submit→claim (claimed_at)'],
  ['placeMs', 'place', 'submit→placed'],
  ['aheadExecutingMs', 'ahead', '  of which: run ahead executing'],
  ['aheadReportingMs', 'report', '  of which: run ahead outputs+report'],
  // 0 when the API placed the job before it answered the report ahead (placement on the outcome).
  ['aheadReportToPlacedMs', 'ev+pass', '  of which: its report→placed'],
  ['dispatchToReceivedMs', 'recv', 'placed→received (send+queue+receive)'],
  ['claimMs', 'claim', 'received→claimed_at (claim)'],
  ['claimToStartMs', 'c→start', 'claimed_at→started_at'],
  ['lorasMs', 'loras', '  of which: claimed→LoRAs ready (agent)'],
];

/** The breakdown as printable lines: the slowest 10 % job by job, then the mean per hop for those and for all. */
export function breakdownLines(hops: JobHops[]): string[] {
  if (hops.length === 0) return ['  (no started jobs to break down)'];
  const sorted = [...hops].sort((a, b) => b.totalMs - a.totalMs);
  const tail = sorted.slice(0, Math.max(1, Math.ceil(sorted.length / 10)));
  const s = (ms: number | undefined) => (ms === undefined ? '      –' : (ms / 1000).toFixed(2).padStart(7));
  const lines = [
    `  slowest ${tail.length} of ${hops.length} started jobs (seconds; – = not in the sources, e.g. it did not wait for a run ahead)`,
    `  ${'job'.padEnd(30)} ${'machine'.padEnd(12)} miss ${COLUMNS.map(([, short]) => short.padStart(7)).join(' ')}`,
  ];
  for (const h of tail) lines.push(`  ${h.jobId.padEnd(30)} ${h.machine.padEnd(12)} ${String(h.missing).padStart(4)} ${COLUMNS.map(([k]) => s(h[k] as number | undefined)).join(' ')}`);
  const mean = (xs: JobHops[], k: keyof JobHops) => {
    const v = xs.map((x) => x[k]).filter((x): x is number => typeof x === 'number');
    return v.length ? { ms: v.reduce((a, b) => a + b, 0) / v.length, n: v.length } : undefined;
  };
  lines.push('', `  ${'hop'.padEnd(40)} ${'slowest 10 %'.padStart(16)} ${'all jobs'.padStart(16)}`);
  for (const [k, , label] of COLUMNS) {
    const a = mean(tail, k);
    const b = mean(hops, k);
    const cell = (m: { ms: number; n: number } | undefined) => (m ? `${(m.ms / 1000).toFixed(3)} s (n=${m.n})` : '–').padStart(16);
    lines.push(`  ${label.padEnd(40)} ${cell(a)} ${cell(b)}`);
  }
  return lines;
}

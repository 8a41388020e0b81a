// Fleet dashboard (admins): the ADR-010 Phase 5 charts from /api/metrics (today's counters; time series when the API
// returns `series`), pools with backlog and estimated wait, and each machine's LoRA cache.
import type { ChartConfiguration } from 'chart.js';
import { useEffect, useState } from 'preact/hooks';
import type { MachineView } from '../../../contract/machines.js';
import type { Api } from '../api.js';
import { ChartView, PALETTE } from '../chart.js';
import { Badge, ErrorNote, Meter, usePoll } from '../components.js';
import { ago, bytes, duration } from '../format.js';

/** GET /api/metrics (functions/triggers/metrics.ts). */
interface Metrics {
  window_hours: number;
  jobs_by_status: Record<string, number>;
  assignments_by_policy: Record<string, number>;
  mean_affinity_score: number | null;
  redispatches: number;
  cache: { hits: number; misses: number; hit_rate: number | null; downloads: number; bytes_downloaded: number; evictions: number; thrash: number };
  machines: { registered: number; live: number };
  /** Time series, when the observability work provides them: name → points. */
  series?: Record<string, { at: string; value: number }[]>;
}
interface Pool {
  pool: string;
  machines_live: number;
  slots_total: number;
  slots_busy: number;
  pending_jobs: number;
  estimated_wait_seconds: number | null;
}

const STATUS_COLORS: Record<string, string> = {
  pending: '#9ca3af',
  assigned: '#d97706',
  running: '#2563eb',
  succeeded: '#16a34a',
  failed: '#dc2626',
  cancelled: '#4b5563',
};

const bar = (labels: string[], data: number[], colors: string[], label: string): ChartConfiguration => ({
  type: 'bar',
  data: { labels, datasets: [{ label, data, backgroundColor: colors }] },
  options: { plugins: { legend: { display: false } }, scales: { y: { beginAtZero: true, ticks: { precision: 0 } } } },
});

/** Agents pin shared LoRAs with PINNED_LORAS; the heartbeat does not carry them yet, so show them once it does. */
const pinned = (m: MachineView): string => {
  const list = (m as MachineView & { pinned_loras?: string[] }).pinned_loras;
  return list ? (list.length ? list.join(', ') : 'none') : 'not reported';
};

export function FleetPage({ api }: { api: Api }) {
  const [metrics, setMetrics] = useState<Metrics | null>(null);
  const [pools, setPools] = useState<Pool[]>([]);
  const [machines, setMachines] = useState<MachineView[]>([]);
  const [error, setError] = useState<string | undefined>();
  const [windowHours, setWindowHours] = useState(24);

  const refresh = async () => {
    try {
      const [m, p, ms] = await Promise.all([
        api.get<Metrics>(`metrics?window_hours=${windowHours}`),
        api.get<{ pools: Pool[] }>('pools'),
        api.get<{ machines: MachineView[] }>('machines'),
      ]);
      setMetrics(m);
      setPools(p.pools);
      setMachines(ms.machines);
      setError(undefined);
    } catch (err) {
      setError((err as Error).message);
    }
  };
  useEffect(() => void refresh(), [windowHours]);
  usePoll(refresh, 5000, true, [windowHours]);

  if (!metrics) return error ? <ErrorNote message={error} /> : <p role="status">Loading the fleet…</p>;
  const c = metrics.cache;
  const statuses = Object.keys(metrics.jobs_by_status);
  const policies = Object.keys(metrics.assignments_by_policy);

  return (
    <section aria-labelledby="fleet-title">
      <h1 id="fleet-title">Fleet</h1>
      <div class="row">
        <label class="narrow">
          Window
          <select value={windowHours} onChange={(e) => setWindowHours(Number((e.target as HTMLSelectElement).value))}>
            <option value={1}>last hour</option>
            <option value={24}>last 24 hours</option>
            <option value={168}>last 7 days</option>
          </select>
        </label>
      </div>
      {error && <ErrorNote message={error} onDismiss={() => setError(undefined)} />}

      <ul class="stats" aria-label="Key figures">
        <li><span class="stat">{c.hit_rate === null ? '—' : `${Math.round(c.hit_rate * 100)}%`}</span>cache hit rate</li>
        <li><span class="stat">{metrics.mean_affinity_score === null ? '—' : metrics.mean_affinity_score.toFixed(2)}</span>mean affinity score</li>
        <li><span class="stat">{metrics.machines.live}/{metrics.machines.registered}</span>machines live</li>
        <li><span class="stat">{c.evictions}</span>evictions</li>
        <li><span class="stat">{bytes(c.bytes_downloaded)}</span>downloaded</li>
        <li><span class="stat">{metrics.redispatches}</span>re-dispatches</li>
      </ul>

      <div class="charts" data-testid="charts">
        <ChartView
          label="Cache hits and misses"
          summary={`${c.hits} hits, ${c.misses} misses`}
          config={{ type: 'doughnut', data: { labels: ['hits', 'misses'], datasets: [{ data: [c.hits, c.misses], backgroundColor: ['#16a34a', '#dc2626'] }] } }}
        />
        <ChartView
          label="Jobs by status"
          summary={statuses.map((s) => `${metrics.jobs_by_status[s]} ${s}`).join(', ') || 'no jobs'}
          config={bar(statuses, statuses.map((s) => metrics.jobs_by_status[s]!), statuses.map((s) => STATUS_COLORS[s] ?? '#6b7280'), 'jobs')}
        />
        <ChartView
          label="Assignments by policy"
          summary={policies.map((p) => `${metrics.assignments_by_policy[p]} ${p}`).join(', ') || 'none'}
          config={bar(policies, policies.map((p) => metrics.assignments_by_policy[p]!), PALETTE, 'assignments')}
        />
        <ChartView
          label="Cache activity"
          summary={`${c.downloads} downloads, ${c.evictions} evictions, ${c.thrash} thrash`}
          config={bar(['downloads', 'evictions', 'thrash'], [c.downloads, c.evictions, c.thrash], ['#2563eb', '#d97706', '#dc2626'], 'events')}
        />
        {Object.entries(metrics.series ?? {}).map(([name, points], i) => (
          <ChartView
            key={name}
            label={name.replace(/_/g, ' ')}
            summary={`${points.length} points`}
            config={{
              type: 'line',
              data: { labels: points.map((p) => new Date(p.at).toLocaleTimeString()), datasets: [{ label: name, data: points.map((p) => p.value), borderColor: PALETTE[i % PALETTE.length], pointRadius: 0 }] },
              options: { plugins: { legend: { display: false } } },
            }}
          />
        ))}
      </div>

      <h2>Pools</h2>
      <table class="table">
        <caption class="visually-hidden">Pools with backlog and estimated wait</caption>
        <thead><tr><th scope="col">Pool</th><th scope="col">Machines live</th><th scope="col">Slots busy</th><th scope="col">Backlog</th><th scope="col">Estimated wait</th></tr></thead>
        <tbody>
          {pools.map((p) => (
            <tr key={p.pool}>
              <td data-label="Pool">{p.pool}</td>
              <td data-label="Machines live">{p.machines_live}</td>
              <td data-label="Slots busy">{p.slots_busy} of {p.slots_total}</td>
              <td data-label="Backlog">{p.pending_jobs} pending</td>
              <td data-label="Estimated wait">{p.estimated_wait_seconds === null ? 'no live machine' : duration(p.estimated_wait_seconds)}</td>
            </tr>
          ))}
        </tbody>
      </table>

      <h2>Machines</h2>
      <ul class="cards" aria-label="Machines">
        {machines.map((m) => (
          <li key={m.machine_id} class="card">
            <div class="card-head">
              <strong class="name">{m.machine_id}</strong>
              <Badge kind={m.live ? (m.draining ? 'validating' : 'ready') : 'rejected'}>{m.live ? (m.draining ? 'draining' : 'live') : 'offline'}</Badge>
            </div>
            {m.cache ? (
              <Meter label="LoRA cache" value={m.cache.used_bytes} max={m.cache.budget_bytes} text={`${bytes(m.cache.used_bytes)} of ${bytes(m.cache.budget_bytes)}`} />
            ) : (
              <p class="empty">No heartbeat with cache figures yet.</p>
            )}
            <dl class="facts">
              <dt>Pool</dt><dd>{m.pool}</dd>
              <dt>Jobs</dt><dd>{m.running_jobs} running of {m.slots} slot(s)</dd>
              <dt>LoRAs</dt><dd>{m.cached_user_loras} user, {m.cached_shared_loras} shared</dd>
              <dt>Pinned</dt><dd>{pinned(m)}</dd>
              <dt>Heartbeat</dt><dd>{ago(m.last_heartbeat_at)}</dd>
              {m.cache && <><dt>Hits / misses</dt><dd>{m.cache.counters.hits} / {m.cache.counters.misses}</dd><dt>Evictions</dt><dd>{m.cache.counters.evictions}</dd></>}
            </dl>
          </li>
        ))}
      </ul>
    </section>
  );
}

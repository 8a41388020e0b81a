// `lora-router machines [list] | get (show) | register | drain | undrain | rm | evict | prewarm` and `pools`, `metrics`
// (admin), `machine <id>`: the fleet and its day-2 controls.
import type { Command } from 'commander';
import { formatBytes } from '../../contract/bytes.js';
import type { MachineDetail, MachineView } from '../../contract/machines.js';
import type { Metrics } from '../../functions/core/machines/fleet.js';
import type { CliContext } from '../index.js';

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n');
}

const print = (value: unknown): void => void process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);

/** `user:<flat_file_id>` or `shared:<file>.safetensors` (a bare *.safetensors name is shared, anything else user). */
export function parseLoraRef(ref: string): { kind: 'user' | 'shared'; key: string } {
  const m = /^(user|shared):(.+)$/.exec(ref);
  if (m) return { kind: m[1] as 'user' | 'shared', key: m[2]! };
  return ref.endsWith('.safetensors') ? { kind: 'shared', key: ref } : { kind: 'user', key: ref };
}

function state(m: MachineView): string {
  if (!m.live) return 'dead';
  if (m.unhealthy_reason) return 'UNHEALTHY';
  if (m.admin_drained) return 'drained';
  if (m.draining) return 'draining';
  if (m.receiving === false) return 'not receiving';
  return 'live';
}

async function listMachines(ctx: CliContext, opts: { json?: boolean }): Promise<void> {
  const { machines: list } = await ctx.api().get<{ machines: MachineView[] }>('machines');
  if (opts.json) return print(list);
  if (list.length === 0) return void process.stdout.write('no machines\n');
  const rows = [['MACHINE', 'POOL', 'STATE', 'SLOTS', 'RUNNING', 'LORAS(U/S)', 'CACHE USED/BUDGET', 'FREE DISK', 'VERSION', 'LAST HEARTBEAT']];
  for (const m of list) {
    const slots = m.agent_slots !== null && m.agent_slots !== m.registered_slots ? `${m.slots} (agent ${m.agent_slots}, limit ${m.registered_slots})` : String(m.slots);
    rows.push([
      m.machine_id,
      m.pool,
      state(m),
      slots,
      String(m.running_jobs),
      `${m.cached_user_loras}/${m.cached_shared_loras}`,
      m.cache ? `${formatBytes(m.cache.used_bytes)} / ${formatBytes(m.cache.budget_bytes)}` : '-',
      m.cache ? formatBytes(m.cache.free_disk_bytes) : '-',
      m.agent_version ?? '-',
      m.last_heartbeat_at ?? 'never',
    ]);
  }
  process.stdout.write(`${table(rows)}\n`);
  for (const m of list) if (m.unhealthy_reason) process.stdout.write(`${m.machine_id} is unhealthy: ${m.unhealthy_reason}\n`);
}

export function register(program: Command, ctx: CliContext): void {
  const machines = program
    .command('machines')
    .description('GPU machines (admin token); without a subcommand: list them')
    .option('--json', 'print JSON')
    .action((opts: { json?: boolean }) => listMachines(ctx, opts));

  machines
    .command('register')
    .description('register a machine (or re-register it, which revokes its previous token) and print its machine token')
    .argument('<machine_id>', 'e.g. gpu-a100-01 (lower case, digits, single hyphens)')
    .option('--pool <pool>', 'machine pool', 'standard')
    .option('--slots <n>', "the admin's limit on jobs at once (the agent's SLOTS is used up to it)", '1')
    .option('--json', 'print the whole response as JSON')
    .action(async (machineId: string, opts: { pool: string; slots: string; json?: boolean }) => {
      const res = await ctx
        .api()
        .post<{ machine_id: string; pool: string; token: string; token_version: number }>('machines', { machine_id: machineId, pool: opts.pool, slots: Number(opts.slots) });
      if (opts.json) return print(res);
      process.stderr.write(`registered ${res.machine_id} in pool ${res.pool} (token version ${res.token_version}); machine token:\n`);
      process.stdout.write(`${res.token}\n`);
    });

  machines
    .command('list')
    .description('registered machines: state, load, cache, version')
    .option('--json', 'print JSON')
    .action((opts: { json?: boolean }) => listMachines(ctx, opts));

  const showMachine = async (id: string, opts: { json?: boolean }) => {
    const m = await ctx.api().get<MachineDetail>(`machines/${encodeURIComponent(id)}`);
    if (opts.json) return print(m);
    process.stdout.write(`${describeMachine(m, Date.now()).join('\n')}\n`);
  };
  machines
    .command('get')
    .alias('show')
    .description('one machine: cached LoRAs with sizes and last use, pins, budget, free disk, version, health, its jobs')
    .argument('<machine_id>')
    .option('--json', 'print JSON')
    .action(showMachine);
  program
    .command('machine')
    .description('one machine (admin token): the same as `machines get <machine_id>`')
    .argument('<machine_id>')
    .option('--json', 'print JSON')
    .action(showMachine);

  for (const [name, what] of [
    ['drain', 'stop sending it new jobs (running jobs finish; the agent keeps running)'],
    ['undrain', 'let a drained machine take new jobs again'],
  ] as const) {
    machines
      .command(name)
      .description(what)
      .argument('<machine_id>')
      .action(async (id: string) => {
        const r = await ctx.api().post<{ machine_id: string; admin_drained: boolean }>(`machines/${encodeURIComponent(id)}/${name}`);
        process.stdout.write(`${r.machine_id}: ${r.admin_drained ? 'drained (no new jobs)' : 'taking jobs'}\n`);
      });
  }

  machines
    .command('rm')
    .description('deregister a machine (its token stops working; its agent exits 78). Drain it first: refused while jobs are on it')
    .argument('<machine_id>')
    .action(async (id: string) => {
      await ctx.api().delete(`machines/${encodeURIComponent(id)}`);
      process.stdout.write(`deregistered ${id}\n`);
    });

  machines
    .command('evict')
    .description('drop a LoRA from one machine (--machine) or all; skipped where pinned or in use')
    .argument('<lora>', 'user:<flat_file_id>, shared:<file>.safetensors, or a bare id / file name')
    .option('--machine <machine_id>', 'only this machine')
    .action(async (ref: string, opts: { machine?: string }) => {
      const r = await ctx.api().post<{ machines: string[] }>('machines/evict', { lora: parseLoraRef(ref), ...(opts.machine ? { machine_id: opts.machine } : {}) });
      process.stdout.write(`eviction ordered on ${r.machines.length} machine(s): ${r.machines.join(', ') || '-'} (applied at their next heartbeat)\n`);
    });

  machines
    .command('prewarm')
    .description('download a ready LoRA onto the named machines ahead of demand (within their budget)')
    .argument('<lora>', 'user:<flat_file_id>, shared:<file>.safetensors, or a bare id / file name')
    .argument('<machine_ids...>')
    .action(async (ref: string, ids: string[]) => {
      const r = await ctx.api().post<{ machines: string[] }>('machines/prewarm', { lora: parseLoraRef(ref), machine_ids: ids });
      process.stdout.write(`pre-warm ordered on ${r.machines.join(', ')} (fetched after their next heartbeat)\n`);
    });

  program
    .command('pools')
    .description('capacity per pool and the estimated wait for a job submitted now (admin token)')
    .option('--json', 'print JSON')
    .action(async (opts: { json?: boolean }) => {
      const { pools } = await ctx.api().get<{ pools: { pool: string; machines_live: number; slots_total: number; slots_busy: number; pending_jobs: number; estimated_wait_seconds: number | null }[] }>('pools');
      if (opts.json) return print(pools);
      if (pools.length === 0) return void process.stdout.write('no pools (no machine has registered)\n');
      const rows = [['POOL', 'MACHINES', 'SLOTS BUSY/TOTAL', 'PENDING', 'EST. WAIT']];
      for (const p of pools) {
        rows.push([p.pool, String(p.machines_live), `${p.slots_busy}/${p.slots_total}`, String(p.pending_jobs), p.estimated_wait_seconds === null ? 'no machine' : `${p.estimated_wait_seconds} s`]);
      }
      process.stdout.write(`${table(rows)}\n`);
    });

  program
    .command('metrics')
    .description('routing and cache metrics over a window (admin token)')
    .option('--hours <n>', 'window in hours', '24')
    .option('--json', 'print JSON')
    .action(async (opts: { hours: string; json?: boolean }) => {
      const m = await ctx.api().get<Metrics>(`metrics?window_hours=${encodeURIComponent(opts.hours)}`);
      if (opts.json) return print(m);
      const lines = [
        `last ${m.window_hours} h`,
        `jobs: ${Object.entries(m.jobs_by_status).map(([k, v]) => `${k} ${v}`).join(', ')}`,
        `assignments: ${Object.entries(m.assignments_by_policy).map(([k, v]) => `${k} ${v}`).join(', ') || '-'}; re-dispatches ${m.redispatches}; mean affinity score ${m.mean_affinity_score === null ? '-' : m.mean_affinity_score.toFixed(2)}`,
        `cache: hit rate ${m.cache.hit_rate === null ? '-' : `${(m.cache.hit_rate * 100).toFixed(1)}%`} (${m.cache.hits} hits, ${m.cache.misses} misses), ${m.cache.downloads} downloads (${formatBytes(m.cache.bytes_downloaded)}), ${m.cache.evictions} evictions, ${m.cache.thrash} thrash`,
        `machines: ${m.machines.live} live of ${m.machines.registered} registered`,
      ];
      process.stdout.write(`${lines.join('\n')}\n`);
    });
}

/** "3 s ago", "5 min ago", "2 h ago", "4 d ago". */
export function ago(iso: string, nowMs: number): string {
  const s = Math.max(0, Math.round((nowMs - Date.parse(iso)) / 1000));
  if (!Number.isFinite(s)) return iso;
  if (s < 120) return `${s} s ago`;
  if (s < 7_200) return `${Math.round(s / 60)} min ago`;
  if (s < 172_800) return `${Math.round(s / 3_600)} h ago`;
  return `${Math.round(s / 86_400)} d ago`;
}

/** `machines get`: one machine in words and a table of its cached LoRAs (sizes in sensible units). */
export function describeMachine(m: MachineDetail, nowMs: number): string[] {
  const lines = [
    `machine ${m.machine_id}  pool ${m.pool}  ${state(m)}  agent ${m.agent_version ?? '-'}  last heartbeat ${m.last_heartbeat_at ? `${m.last_heartbeat_at} (${ago(m.last_heartbeat_at, nowMs)})` : 'never'}`,
    `slots ${m.slots} (limit ${m.registered_slots}, agent ${m.agent_slots ?? '-'})  running ${m.running_jobs}`,
    m.cache
      ? `cache ${formatBytes(m.cache.used_bytes)} used of ${formatBytes(m.cache.budget_bytes)} budget, free disk ${formatBytes(m.cache.free_disk_bytes)}; hits ${m.cache.counters.hits}, misses ${m.cache.counters.misses}, evictions ${m.cache.counters.evictions}`
      : 'cache: no heartbeat yet',
    ...(m.unhealthy_reason ? [`UNHEALTHY: ${m.unhealthy_reason}`] : []),
    `pinned: ${m.pinned.join(', ') || '-'}`,
  ];
  const total = m.cached.user.length + m.cached.shared.length;
  if (m.cache_entries === null) {
    lines.push(`cached LoRAs (${total}; this agent version does not report sizes):`);
    lines.push(`  user: ${m.cached.user.join(', ') || '-'}`, `  shared: ${m.cached.shared.join(', ') || '-'}`);
  } else if (m.cache_entries.length === 0) {
    lines.push(`cached LoRAs: ${total === 0 ? 'none' : total}`);
  } else {
    const shown = m.cache_entries.length < total ? ` (the ${m.cache_entries.length} most recently used of ${total})` : ` (${total})`;
    lines.push(`cached LoRAs${shown}:`);
    const rows = [['KIND', 'LORA', 'SIZE', 'LAST USED', 'PINNED', 'IN USE']];
    for (const e of m.cache_entries) rows.push([e.kind, e.key, formatBytes(e.size_bytes), ago(e.last_used_at, nowMs), e.pinned ? 'yes' : '-', e.in_use ? String(e.in_use) : '-']);
    lines.push(...table(rows).split('\n').map((l) => `  ${l}`));
  }
  const running = m.jobs.filter((j) => j.status === 'running');
  const queued = m.jobs.filter((j) => j.status !== 'running');
  // `running` from the claim: the slot is held while the LoRAs are fetched, before the run starts.
  const since = (j: MachineDetail['jobs'][number]) =>
    `claimed ${j.claimed_at ? ago(j.claimed_at, nowMs) : '?'}, ${j.started_at ? `started ${ago(j.started_at, nowMs)}` : 'not started yet'}`;
  lines.push(`running jobs: ${running.map((j) => `${j.job_id} (${since(j)})`).join(', ') || '-'}`);
  lines.push(`assigned, not started: ${queued.map((j) => `${j.job_id} (${j.status}${j.assigned_at ? `, ${ago(j.assigned_at, nowMs)}` : ''})`).join(', ') || '-'}`);
  if (m.pending_evict.length) lines.push(`evictions waiting for a heartbeat: ${m.pending_evict.map((k) => k.key).join(', ')}`);
  if (m.pending_prewarm.length) lines.push(`pre-warms waiting for a heartbeat: ${m.pending_prewarm.map((k) => k.key).join(', ')}`);
  return lines;
}

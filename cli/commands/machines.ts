// `lora-router machines register | list` (admin): the fleet.
import type { Command } from 'commander';
import type { MachineView } from '../../contract/machines.js';
import type { CliContext } from '../index.js';

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n');
}

const gb = (bytes: number): string => `${(bytes / 1024 ** 3).toFixed(1)}G`;

export function register(program: Command, ctx: CliContext): void {
  const machines = program.command('machines').description('GPU machines (admin token)');

  machines
    .command('register')
    .description('register a machine (or re-register it, which revokes its previous token) and print its machine token')
    .argument('<machine_id>', 'e.g. gpu-a100-01 (lower case, digits, single hyphens)')
    .option('--pool <pool>', 'machine pool', 'standard')
    .option('--slots <n>', 'jobs it runs at once', '1')
    .option('--json', 'print the whole response as JSON')
    .action(async (machineId: string, opts: { pool: string; slots: string; json?: boolean }) => {
      const res = await ctx
        .api()
        .post<{ machine_id: string; pool: string; token: string; token_version: number }>('machines', { machine_id: machineId, pool: opts.pool, slots: Number(opts.slots) });
      if (opts.json) {
        process.stdout.write(`${JSON.stringify(res, null, 2)}\n`);
        return;
      }
      process.stderr.write(`registered ${res.machine_id} in pool ${res.pool} (token version ${res.token_version}); machine token:\n`);
      process.stdout.write(`${res.token}\n`);
    });

  machines
    .command('list')
    .description('registered machines, liveness, load and cache')
    .option('--json', 'print JSON')
    .action(async (opts: { json?: boolean }) => {
      const { machines: list } = await ctx.api().get<{ machines: MachineView[] }>('machines');
      if (opts.json) {
        process.stdout.write(`${JSON.stringify(list, null, 2)}\n`);
        return;
      }
      if (list.length === 0) {
        process.stdout.write('no machines\n');
        return;
      }
      const rows = [['MACHINE', 'POOL', 'LIVE', 'SLOTS', 'RUNNING', 'LORAS(U/S)', 'CACHE USED/BUDGET', 'LAST HEARTBEAT']];
      for (const m of list) {
        rows.push([
          m.machine_id,
          m.pool,
          m.live ? (m.draining ? 'draining' : m.receiving === false ? 'not receiving' : 'yes') : 'no',
          String(m.slots),
          String(m.running_jobs),
          `${m.cached_user_loras}/${m.cached_shared_loras}`,
          m.cache ? `${gb(m.cache.used_bytes)}/${gb(m.cache.budget_bytes)}` : '-',
          m.last_heartbeat_at ?? 'never',
        ]);
      }
      process.stdout.write(`${table(rows)}\n`);
    });
}

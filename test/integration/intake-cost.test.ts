// What a submission costs in Cosmos (issue 14 item 1: "Cosmos cost per submit stays bounded — measure"). The core
// intake and placement the jobsSubmit trigger runs (submitJob, then placeNewJob), in this process, over the real
// emulators, with every container wrapped to count the operations asked of it: a point read, a create / replace /
// upsert / delete / patch, and each page a query fetches. One real agent (1 slot) runs what gets placed, so most of a
// burst finds the fleet full: the case where intake looks at the fleet twice. The counts are printed (the figures in
// docs/scheduler.md, "Placement on events") and held to the design's bounds.
import type { Container } from '@azure/cosmos';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { submitJobRequestSchema } from '../../contract/jobs.js';
import { depsFromClients, type CoreDeps } from '../../functions/core/deps.js';
import { submitJob } from '../../functions/core/jobs/intake.js';
import { placeNewJob } from '../../functions/core/tick/placement.js';
import { startTestHost, type TestHost } from '../support/stack.js';
import { startTestFleet, type TestFleet } from '../support/test-agents.js';
import { seedRealLora } from './agent.fixtures.js';
import { suffix } from './jobs.fixtures.js';

type Tally = Map<string, number>;

/** The container, counting each operation as `<container>.<op>` in `tally`. */
function counted(c: Container, name: string, tally: Tally): Container {
  const bump = (op: string) => tally.set(`${name}.${op}`, (tally.get(`${name}.${op}`) ?? 0) + 1);
  const wrap = <T extends object>(target: T, ops: readonly string[], label = (op: string) => op): T =>
    new Proxy(target, {
      get(t, p) {
        const v = Reflect.get(t, p) as unknown;
        if (typeof v !== 'function') return v;
        if (typeof p === 'string' && ops.includes(p)) {
          return (...args: unknown[]) => {
            bump(label(p));
            return (v as (...a: unknown[]) => unknown).apply(t, args);
          };
        }
        return (v as (...a: unknown[]) => unknown).bind(t);
      },
    });
  const items = new Proxy(c.items, {
    get(t, p) {
      const v = Reflect.get(t, p) as unknown;
      if (p === 'query') {
        return (...args: unknown[]) => {
          const text = typeof args[0] === 'string' ? args[0] : (args[0] as { query: string }).query;
          // The known-pools lookup is told apart: intake's other machines queries are fleet views.
          const op = /^SELECT c\.pool FROM c/.test(text) ? 'query(pools)' : 'query';
          return wrap((v as (...a: unknown[]) => object).apply(t, args), ['fetchAll', 'fetchNext'], () => op);
        };
      }
      if (typeof v !== 'function') return v;
      if (p === 'create' || p === 'upsert' || p === 'batch' || p === 'bulk') {
        return (...args: unknown[]) => {
          bump(p);
          return (v as (...a: unknown[]) => unknown).apply(t, args);
        };
      }
      return (v as (...a: unknown[]) => unknown).bind(t);
    },
  });
  return new Proxy(c, {
    get(t, p) {
      if (p === 'items') return items;
      if (p === 'item') return (id: string, pk: string) => wrap(t.item(id, pk), ['read', 'replace', 'delete', 'patch']);
      const v = Reflect.get(t, p) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(t) : v;
    },
  });
}

let t: TestHost;
let fleet: TestFleet;
beforeAll(async () => {
  t = await startTestHost({ TENANT_MAX_ACTIVE_JOBS: '10000' }, { timers: false });
  fleet = await startTestFleet(t, 0, { prefix: 'ic' });
}, 120_000);
afterAll(async () => {
  await fleet?.stop();
  await t?.stop();
});

describe('Cosmos operations per submission', () => {
  it('are a quota count, the LoRA reads, the create and, when placed, a ledger and a job CAS; fleet views are shared', async () => {
    const tenant = `ic-${suffix()}`;
    const pool = `ic${suffix()}`.slice(0, 20);
    const loras = [await seedRealLora(t, { owner: tenant, dataBytes: 64 * 1024, seed: 31 }), await seedRealLora(t, { owner: tenant, dataBytes: 64 * 1024, seed: 32 })];
    await fleet.add(`ic-a-${suffix()}`, { pool, slots: 1 });
    const tally: Tally = new Map();
    const c = t.clients.cosmosContainers;
    const deps: CoreDeps = depsFromClients(t.clients, {
      jobs: counted(c.jobs, 'jobs', tally),
      machines: counted(c.machines, 'machines', tally),
      loras: counted(c.loras, 'loras', tally),
      events: counted(c.events, 'events', tally),
    });
    const body = submitJobRequestSchema.parse({ service_required: 'open-loras', pool, payload: {}, requirements: { loras: loras.map((l) => l.requirement) } });
    const submitOne = async () => {
      const outcome = await submitJob(deps, tenant, body);
      expect(outcome.created).toBe(true);
      const placed = await placeNewJob(deps, outcome.doc);
      return (placed?.assigned ?? 0) > 0;
    };
    const measure = async (label: string, n: number, concurrency: number) => {
      tally.clear();
      const started = Date.now();
      let placed = 0;
      let next = 0;
      await Promise.all(Array.from({ length: concurrency }, async () => {
        while (next < n) {
          next++;
          if (await submitOne()) placed++;
        }
      }));
      const elapsedMs = Date.now() - started;
      const get = (k: string) => tally.get(k) ?? 0;
      const total = [...tally.values()].reduce((a, b) => a + b, 0);
      const rows = [...tally.entries()].sort().map(([k, v]) => `${k} ${v} (${(v / n).toFixed(2)}/submit)`);
      process.stdout.write(`intake cost, ${label}: ${n} submits, ${placed} placed at intake, ${elapsedMs} ms; ${total} Cosmos operations, ${(total / n).toFixed(2)} per submit\n  ${rows.join('\n  ')}\n`);
      // Per submission, exactly: one quota count (a query on the tenant's partition), a point read per LoRA, one create.
      expect(get('loras.read')).toBe(n * loras.length);
      expect(get('jobs.create')).toBe(n);
      // Fleet views (each: the machines list and the ledgers from `machines`, the busy jobs from `jobs`) are shared: at
      // most one read in flight, re-read only when older than 200 ms, so far fewer than one per submission.
      const machineQueries = get('machines.query');
      expect(machineQueries % 2).toBe(0);
      expect(machineQueries / 2).toBeLessThanOrEqual(2 + elapsedMs / 200);
      // The pool check reads the machines' pools once per instance per 30 s, not once per submission.
      expect(get('machines.query(pools)')).toBeLessThanOrEqual(1 + elapsedMs / 30_000);
      // A placed job costs a ledger read + CAS and a job CAS at most (plus the dispatch, which is not Cosmos).
      expect(get('jobs.replace')).toBeLessThanOrEqual(2 * n);
      return { total, placed, elapsedMs };
    };
    const seq = await measure('one at a time', 20, 1);
    const burst = await measure('a burst, 10 at once', 60, 10);
    expect(seq.total).toBeGreaterThan(0);
    expect(burst.total / 60).toBeLessThan(seq.total / 20 + 3);
  }, 240_000);
});

// The dead-letter path on the local transport (Storage queues on Azurite): a dispatch delivered MAX_DELIVERIES times
// without completion, or malformed, moves to the dead-letter queue; GET /api/dead-letters shows it with its job;
// POST /api/dead-letters/recover re-places a job still assigned at that epoch and removes the dead letters.
import { randomBytes } from 'node:crypto';
import { QueueServiceClient } from '@azure/storage-queue';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ApiClient } from '../../api-client/index.js';
import type { DeadLetterView } from '../../contract/dispatch.js';
import { queueNameFor } from '../../dispatch/index.js';
import { MAX_DELIVERIES } from '../../dispatch/types.js';
import { startTestHost, type TestHost } from '../support/stack.js';
import { failure, getJob, runTimer, TestMachine } from './jobs.fixtures.js';

const until = async <T>(what: string, fn: () => Promise<T | undefined | null | false>, timeoutMs = 20_000): Promise<T> => {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
};

describe('dead-lettered dispatches', () => {
  let t: TestHost;
  let admin: ApiClient;
  let user: ApiClient;
  let machine: TestMachine;

  beforeAll(async () => {
    // Timers off: the test runs the scheduler itself, and no reaper re-routes the job behind its back.
    t = await startTestHost({}, { timers: false });
    admin = await t.as('ops', 'admin');
    user = await t.as('alice');
    machine = await TestMachine.register(t, admin, `gpu-dl-${randomBytes(3).toString('hex')}`);
    await machine.beat();
  });
  afterAll(async () => {
    await machine?.close();
    await t?.stop();
  });

  const list = async () => (await admin.get<{ dead_letters: DeadLetterView[] }>('dead-letters')).dead_letters;

  it('a dispatch abandoned MAX_DELIVERIES times is dead-lettered, listed with its job, and recovery re-places the job', async () => {
    expect(await list()).toEqual([]);
    const { job_id } = await user.post<{ job_id: string }>('jobs', { service_required: 'echo' });
    await runTimer(t, 'schedulerTick');
    const assigned = await until('the job assigned', async () => {
      const j = await getJob(user, job_id);
      return j.status === 'assigned' ? j : null;
    });
    expect(assigned.machine_id).toBe(machine.id);

    // An agent that keeps giving the message back (e.g. crashing before it can claim).
    for (let i = 1; i <= MAX_DELIVERIES; i++) {
      const [m] = await machine.dispatch.receive(1, 5000);
      expect(m?.message).toEqual({ job_id, epoch: assigned.epoch });
      expect(m!.deliveryCount).toBe(i);
      await machine.dispatch.abandon(m!);
    }
    // The next delivery would be the 11th: the receiver dead-letters it instead of returning it.
    expect(await machine.dispatch.receive(1, 1000)).toEqual([]);

    const letters = await list();
    expect(letters).toHaveLength(1);
    expect(letters[0]).toMatchObject({
      message_id: `${job_id}:${assigned.epoch}`,
      job_id,
      epoch: assigned.epoch,
      machine_id: machine.id,
      reason: 'MaxDeliveryCountExceeded',
      delivery_count: MAX_DELIVERIES + 1,
      job_status: 'assigned',
      job_epoch: assigned.epoch,
      verdict: 'replace',
    });

    const result = await admin.post<{ replaced: string[]; removed: string[]; kept: string[] }>('dead-letters/recover', {});
    expect(result).toEqual({ replaced: [job_id], removed: [`${job_id}:${assigned.epoch}`], kept: [] });
    const after = await getJob(user, job_id);
    expect(after.status).toBe('pending');
    expect(after.epoch).toBe(assigned.epoch + 1);
    expect(after.machine_id).toBeNull();
    expect(await list()).toEqual([]);
    // Recovering again changes nothing: the job moved on.
    expect(await admin.post('dead-letters/recover', {})).toEqual({ replaced: [], removed: [], kept: [] });
  });

  it('a malformed message is dead-lettered as stale; recovering removes it and touches no job', async () => {
    const q = QueueServiceClient.fromConnectionString(t.settings.LoraStorage!).getQueueClient(queueNameFor(t.settings.DISPATCH_QUEUE_PREFIX!, machine.id));
    await q.sendMessage(Buffer.from('not a dispatch').toString('base64'));
    expect(await machine.dispatch.receive(1, 1000)).toEqual([]);
    const [letter] = await list();
    expect(letter).toMatchObject({ job_id: null, reason: 'MalformedDispatch', verdict: 'stale', machine_id: machine.id });
    const result = await admin.post<{ replaced: string[]; removed: string[] }>('dead-letters/recover', { message_ids: [letter!.message_id] });
    expect(result.replaced).toEqual([]);
    expect(result.removed).toEqual([letter!.message_id]);
    expect(await list()).toEqual([]);
  });

  it('is for admins only, and refuses a bad body with a 400', async () => {
    expect((await failure(user.get('dead-letters'))).status).toBe(403);
    expect((await failure(user.post('dead-letters/recover', {}))).status).toBe(403);
    expect((await failure(admin.post('dead-letters/recover', { message_ids: 'all' }))).status).toBe(400);
    expect((await failure(admin.post('dead-letters/recover', { other: 1 }))).status).toBe(400);
  });
});

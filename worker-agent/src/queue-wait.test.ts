import { describe, expect, it } from 'vitest';
import { DEFAULT_RUN_SECONDS, QUEUE_WAIT_MIN_SECONDS, QUEUE_WAIT_RUNS, QueueWaitLimit, takeRunSlot } from './queue-wait.js';
import { RunSlots } from './run-slots.js';

describe('QueueWaitLimit', () => {
  it('auto: QUEUE_WAIT_RUNS × the mean of recent runs, the default before any, never under the minimum', () => {
    const q = new QueueWaitLimit('auto');
    expect(q.limitMs()).toBe(QUEUE_WAIT_RUNS * DEFAULT_RUN_SECONDS * 1000);
    q.observeRun(30_000);
    q.observeRun(50_000);
    expect(q.expectedRunSeconds()).toBe(40);
    expect(q.limitMs()).toBe(QUEUE_WAIT_RUNS * 40_000);
    // Only the last 20 runs count: short runs push the long ones out, down to the floor.
    for (let i = 0; i < 20; i++) q.observeRun(500);
    expect(q.expectedRunSeconds()).toBe(0.5);
    expect(q.limitMs()).toBe(QUEUE_WAIT_MIN_SECONDS * 1000);
  });

  it('a fixed number is the bound; 0 never hands back', () => {
    expect(new QueueWaitLimit(7).limitMs()).toBe(7000);
    expect(new QueueWaitLimit(0).limitMs()).toBeUndefined();
  });
});

describe('takeRunSlot', () => {
  it('takes a free slot at once, even past the limit (the job can run now)', async () => {
    const slots = new RunSlots(1);
    const got = await takeRunSlot(slots, new AbortController().signal, 1, Date.now() - 60_000);
    expect(got.release).toBeTypeOf('function');
    expect(got.waitedTooLong).toBeUndefined();
    expect(slots.running).toBe(1);
  });

  it('gives up when the limit after the claim passes with the slot still busy, and leaves the line', async () => {
    const slots = new RunSlots(1);
    const busy = await slots.take();
    const got = await takeRunSlot(slots, new AbortController().signal, 50, Date.now());
    expect(got.release).toBeUndefined();
    expect(got.waitedTooLong).toMatch(/not started within 0 s of its claim \(QUEUE_WAIT_LIMIT_SECONDS\)/);
    expect(slots.queued).toBe(0);
    // The slot, once freed, is free (not granted to the run that gave up).
    busy();
    expect(slots.running).toBe(0);
  });

  it('runs when the slot frees before the limit', async () => {
    const slots = new RunSlots(1);
    const busy = await slots.take();
    const waiting = takeRunSlot(slots, new AbortController().signal, 5_000, Date.now());
    busy();
    const got = await waiting;
    expect(got.release).toBeTypeOf('function');
    expect(got.waitedTooLong).toBeUndefined();
    expect(slots.running).toBe(1);
  });

  it('a cancel while waiting is not a hand-back', async () => {
    const slots = new RunSlots(1);
    await slots.take();
    const cancel = new AbortController();
    const waiting = takeRunSlot(slots, cancel.signal, 5_000, Date.now());
    cancel.abort(new Error('cancelled'));
    expect(await waiting).toEqual({});
    expect(slots.queued).toBe(0);
  });

  it('without a limit it waits for the slot as before', async () => {
    const slots = new RunSlots(1);
    const busy = await slots.take();
    const waiting = takeRunSlot(slots, new AbortController().signal, undefined, Date.now() - 3_600_000);
    await new Promise((r) => setTimeout(r, 30));
    expect(slots.queued).toBe(1);
    busy();
    expect((await waiting).release).toBeTypeOf('function');
  });
});

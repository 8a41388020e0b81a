import { describe, expect, it } from 'vitest';
import { RunSlots } from './run-slots.js';

describe('RunSlots (queued dispatches wait for one of SLOTS)', () => {
  it('grants up to `slots` at once and the rest in the order they asked', async () => {
    const slots = new RunSlots(2);
    const order: string[] = [];
    const a = await slots.take();
    const b = await slots.take();
    expect(slots.running).toBe(2);
    const c = slots.take().then((release) => (order.push('c'), release));
    const d = slots.take().then((release) => (order.push('d'), release));
    await Promise.resolve();
    expect(order).toEqual([]);
    expect(slots.queued).toBe(2);
    b();
    const releaseC = await c;
    expect(order).toEqual(['c']);
    expect(slots.running).toBe(2);
    a();
    const releaseD = await d;
    expect(order).toEqual(['c', 'd']);
    releaseC();
    releaseD();
    expect(slots.running).toBe(0);
  });

  it('releasing twice frees one slot only', async () => {
    const slots = new RunSlots(1);
    const release = await slots.take();
    release();
    release();
    expect(slots.running).toBe(0);
    await slots.take();
    expect(slots.running).toBe(1);
    let granted = false;
    void slots.take().then(() => (granted = true));
    await Promise.resolve();
    expect(granted).toBe(false);
  });

  it('an aborted wait leaves the line without taking a slot', async () => {
    const slots = new RunSlots(1);
    const first = await slots.take();
    const abort = new AbortController();
    const waiting = slots.take(abort.signal);
    const next = slots.take();
    abort.abort(new Error('cancelled'));
    await expect(waiting).rejects.toThrow('cancelled');
    expect(slots.queued).toBe(1);
    first();
    const release = await next;
    expect(slots.running).toBe(1);
    release();
    expect(slots.running).toBe(0);
    await expect(slots.take(abort.signal)).rejects.toThrow('cancelled');
  });
});

import { describe, expect, it } from 'vitest';
import pino from 'pino';
import { TokenWatch } from './token-watch.js';

describe('TokenWatch', () => {
  it('switches to a new token from the file, waits through the grace period, then gives up', () => {
    let file = 'old';
    let now = 1_000;
    const applied: string[] = [];
    const w = new TokenWatch('old', { reload: () => file, apply: (t) => applied.push(t), graceMs: 5_000, log: pino({ level: 'silent' }), now: () => now });
    expect(w.refused()).toBe('waiting'); // same token in the file
    now += 4_999;
    expect(w.refused()).toBe('waiting');
    file = 'new';
    expect(w.refused()).toBe('new_token');
    expect(applied).toEqual(['new']);
    expect(w.refused()).toBe('waiting'); // the new one is refused too: a fresh grace period
    now += 5_000;
    expect(w.refused()).toBe('give_up');
    w.accepted();
    expect(w.refused()).toBe('waiting');
  });

  it('without a token file (MACHINE_TOKEN) it can only wait and give up', () => {
    let now = 0;
    const w = new TokenWatch('t', { graceMs: 10, log: pino({ level: 'silent' }), now: () => now });
    expect(w.refused()).toBe('waiting');
    now = 10;
    expect(w.refused()).toBe('give_up');
  });
});

import type { Container } from '@azure/cosmos';
import { describe, expect, it } from 'vitest';
import { readItem } from './point-read.js';

// A container whose one item read answers with `outcome` (errors shaped as @azure/cosmos throws them: `code` = status).
const container = (outcome: { resource?: object } | { code: number }) =>
  ({
    item: () => ({
      read: async () => {
        if ('code' in outcome) throw Object.assign(new Error(`status ${outcome.code}`), outcome);
        return outcome;
      },
    }),
  }) as unknown as Container;

describe('readItem', () => {
  it('answers the item, or null when it is absent (404)', async () => {
    expect(await readItem(container({ resource: { id: 'a' } }), 'a', 'p')).toEqual({ id: 'a' });
    expect(await readItem(container({}), 'a', 'p')).toBeNull();
    expect(await readItem(container({ code: 404 }), 'a', 'p')).toBeNull();
  });
  it('throws anything else: a throttle or a server error is not "absent"', async () => {
    await expect(readItem(container({ code: 429 }), 'a', 'p')).rejects.toThrow('status 429');
    await expect(readItem(container({ code: 500 }), 'a', 'p')).rejects.toThrow('status 500');
  });
});

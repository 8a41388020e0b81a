import { describe, expect, it } from 'vitest';
import type { CoreDeps } from '../deps.js';
import type { LoraDoc } from '../loras/records.js';
import { hintUploadedLora } from './upload-hint.js';

// The end-to-end case (hints on, a real fleet) is test/integration/prewarm.test.ts. These are the cases that must not
// reach the store at all: every container here throws when touched.
const untouchable = new Proxy({}, { get: (_t, name) => { throw new Error(`store touched: ${String(name)}`); } });
const deps = (prewarmHints: boolean) =>
  ({ config: { prewarmHints }, jobs: untouchable, machines: untouchable, now: () => 0, log: { info() {}, warn() {} } }) as unknown as CoreDeps;
const lora = (over: Partial<LoraDoc> = {}) =>
  ({ id: 'f1', owner_id: 't1', kind: 'user', key: 'f1', status: 'ready', size_bytes: 10, sha256: 'x', container: 'c', blob_name: 'b', ...over }) as LoraDoc;

describe('hintUploadedLora', () => {
  it('does nothing while PREWARM_HINTS is off (the default)', async () => {
    expect(await hintUploadedLora(deps(false), lora())).toBeNull();
  });
  it('does nothing for a shared LoRA or one that is not ready', async () => {
    expect(await hintUploadedLora(deps(true), lora({ kind: 'shared' }))).toBeNull();
    expect(await hintUploadedLora(deps(true), lora({ status: 'rejected' }))).toBeNull();
  });
  it('never throws: a failing store is logged and the upload goes on', async () => {
    const warned: unknown[] = [];
    const d = { ...deps(true), log: { info() {}, warn: (o: unknown) => warned.push(o) } } as unknown as CoreDeps;
    expect(await hintUploadedLora(d, lora())).toBeNull();
    expect(warned).toHaveLength(1);
  });
});

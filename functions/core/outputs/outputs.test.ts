// The pure parts of job outputs: limits, names, retention of the record.
import { describe, expect, it } from 'vitest';
import { contentTypeFor, outputNameSchema } from '../../../contract/outputs.js';
import { outputsLive } from '../jobs/model.js';
import { checkOutputLimits, liveOutputs, outputBlobName } from './outputs.js';

const deps = { config: { outputMaxFiles: 2, outputMaxBytes: 100 } } as Parameters<typeof checkOutputLimits>[0];

describe('job outputs', () => {
  it('limits count, bytes and duplicate names, naming the setting', () => {
    expect(() => checkOutputLimits(deps, [{ name: 'a', size_bytes: 50 }, { name: 'b', size_bytes: 50 }])).not.toThrow();
    expect(() => checkOutputLimits(deps, [1, 2, 3].map((i) => ({ name: `${i}`, size_bytes: 1 })))).toThrow(/3 output files; at most 2 .*OUTPUT_MAX_FILES/);
    expect(() => checkOutputLimits(deps, [{ name: 'a', size_bytes: 101 }])).toThrow(/101 bytes of outputs; at most 100 .*OUTPUT_MAX_BYTES/);
    expect(() => checkOutputLimits(deps, [{ name: 'a', size_bytes: 1 }, { name: 'a', size_bytes: 1 }])).toThrow(/appears twice/);
  });

  it('names are flat and safe; blob names are scoped to tenant/job/epoch', () => {
    for (const ok of ['9-ComfyUI_00001_.png', 'a', 'x.tar.gz']) expect(outputNameSchema.safeParse(ok).success, ok).toBe(true);
    for (const bad of ['', '.hidden', '../x', 'a/b', 'a b', 'é.png', 'x'.repeat(201)]) expect(outputNameSchema.safeParse(bad).success, bad).toBe(false);
    expect(outputBlobName('alice', 'job_1', 3, 'a.png')).toBe('outputs/alice/job_1/e3/a.png');
    expect([contentTypeFor('a.PNG'), contentTypeFor('b.webp'), contentTypeFor('c')]).toEqual(['image/png', 'image/webp', 'application/octet-stream']);
  });

  it('recorded outputs stop being listed once their retention is over', () => {
    const doc = { outputs: [{ name: 'a.png', size_bytes: 1, sha256: '0'.repeat(64), content_type: 'image/png' }], outputs_expire_at: '2030-01-02T00:00:00.000Z' };
    expect(liveOutputs(doc, Date.parse('2030-01-01T23:59:59Z'))).toHaveLength(1);
    expect(liveOutputs(doc, Date.parse('2030-01-02T00:00:00Z'))).toEqual([]);
    expect(outputsLive({ outputs_expire_at: null }, Date.now())).toBe(true);
  });
});

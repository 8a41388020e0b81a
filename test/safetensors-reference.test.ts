// The upload validator against the reference loader's rules (huggingface/safetensors read_metadata + serde_json),
// case by case and by seeded differential fuzzing against the independent model in support/safetensors-oracle.ts.
// 100 000 inputs: `npm run bench:fuzz`; here a smaller count keeps the suite quick on two cores.
import { describe, expect, it } from 'vitest';
import { validateSafetensors, type ValidationResult } from '../functions/core/safetensors/validate.js';
import { runFuzz } from '../testkit/safetensors-fuzz.js';
import { oracleValidate } from '../testkit/safetensors-oracle.js';

const LIMITS = { maxHeaderBytes: 16 * 1024 * 1024, maxTensors: 100_000, maxMetadataEntries: 10_000 };

function file(header: string, dataBytes: number): Buffer {
  const h = Buffer.from(header);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(h.length));
  return Buffer.concat([len, h, Buffer.alloc(dataBytes)]);
}

async function validate(buf: Buffer): Promise<ValidationResult> {
  return validateSafetensors({ size: buf.length, read: async (o, l) => buf.subarray(o, o + l) }, LIMITS);
}

const T = '"dtype":"U8","shape":[2],"data_offsets":[0,2]';

// Each: the header, the data size, whether the reference loader accepts it.
const CASES: Array<[string, string, number, boolean]> = [
  ['plain', `{"a":{${T}}}`, 2, true],
  ['lone leading surrogate in a name', `{"a\\ud800":{${T}}}`, 2, false],
  ['lone trailing surrogate in a name', `{"a\\udc00":{${T}}}`, 2, false],
  ['leading surrogate followed by a non-surrogate escape', `{"a\\ud800\\u0041":{${T}}}`, 2, false],
  ['lone surrogate in an ignored field', `{"a":{${T},"x":"\\ud800"}}`, 2, false],
  ['surrogate pair', `{"a\\ud83d\\ude00":{${T}}}`, 2, true],
  ['dimension written 2.0', '{"a":{"dtype":"U8","shape":[2.0],"data_offsets":[0,2]}}', 2, false],
  ['dimension written 2e0', '{"a":{"dtype":"U8","shape":[2e0],"data_offsets":[0,2]}}', 2, false],
  ['offset written -0', '{"a":{"dtype":"U8","shape":[0],"data_offsets":[-0,0]}}', 0, false],
  ['offset written 1.0', '{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1.0]}}', 1, false],
  ['dimension 2^64 - 1 times 0', '{"a":{"dtype":"U8","shape":[18446744073709551615,0],"data_offsets":[0,0]}}', 0, true],
  ['dimension 2^64', '{"a":{"dtype":"U8","shape":[18446744073709551616,0],"data_offsets":[0,0]}}', 0, false],
  ['duplicate __metadata__', `{"__metadata__":{},"__metadata__":{},"a":{${T}}}`, 2, false],
  ['__metadata__ null', `{"__metadata__":null,"a":{${T}}}`, 2, true],
  ['duplicate key inside __metadata__ (last wins)', `{"__metadata__":{"k":"v","k":"w"},"a":{${T}}}`, 2, true],
  ['duplicate tensor name, first entry invalid', `{"a":{"dtype":"U8","shape":[1.5],"data_offsets":[0,2]},"a":{${T}}}`, 2, false],
  ['duplicate tensor name, both valid (last wins)', `{"a":{"dtype":"U8","shape":[9],"data_offsets":[0,9]},"a":{${T}}}`, 2, true],
  ['duplicate dtype field in a tensor', `{"a":{"dtype":"I8",${T}}}`, 2, false],
  ['nesting 127 deep', `{"a":{${T},"x":${'['.repeat(125)}${']'.repeat(125)}}}`, 2, true],
  ['nesting 128 deep', `{"a":{${T},"x":${'['.repeat(126)}${']'.repeat(126)}}}`, 2, false],
  ['tensor as a 3-item list', '{"a":["U8",[2],[0,2]]}', 2, true],
  ['tensor as a 2-item list', '{"a":["U8",[2]]}', 2, false],
  ['dtype in enum map form', '{"a":{"dtype":{"U8":null},"shape":[2],"data_offsets":[0,2]}}', 2, true],
  ['dtype map form with a value', '{"a":{"dtype":{"U8":0},"shape":[2],"data_offsets":[0,2]}}', 2, false],
  ['FNUZ dtype', '{"a":{"dtype":"F8_E4M3FNUZ","shape":[2],"data_offsets":[0,2]}}', 2, true],
  ['leading whitespace', ` {"a":{${T}}}`, 2, true],
  ['float that overflows in an ignored field', `{"a":{${T},"x":1e400}}`, 2, false],
];

describe('the reference loader rules', () => {
  it.each(CASES)('%s', async (_name, header, data, accepted) => {
    const buf = file(header, data);
    // The oracle models the reference; the validator must agree with it.
    expect(oracleValidate(buf, LIMITS).ok).toBe(accepted);
    const r = await validate(buf);
    expect(r.ok, r.ok ? '' : `${r.code}: ${r.reason}`).toBe(accepted);
  });

  it('rejects a 16 MiB nested-array header at the depth limit', async () => {
    const head = `{"a":{${T},"x":`;
    const depth = (16 * 1024 * 1024 - head.length - 2) / 2;
    const r = await validate(file(head + '['.repeat(depth) + ']'.repeat(depth) + '}}', 2));
    expect(r).toMatchObject({ ok: false, code: 'header_too_deep' });
  });

  it('stops a 500k-key __metadata__ at the entry limit', async () => {
    const keys = Array.from({ length: 500_000 }, (_, i) => `"k${i}":"v"`).join(',');
    const r = await validate(file(`{"__metadata__":{${keys}},"a":{${T}}}`, 2));
    expect(r).toMatchObject({ ok: false, code: 'header_too_many_entries' });
  });
});

describe('differential fuzzing against the reference model', () => {
  it('agrees on 20 000 seeded mutations', async () => {
    const stats = await runFuzz(18, 20_000, LIMITS);
    expect(stats.firstDisagreements).toEqual([]);
    expect(stats.disagreements).toBe(0);
    // The inputs exercise both sides and the rules that matter.
    expect(stats.accepted).toBeGreaterThan(2_000);
    expect(stats.rejected).toBeGreaterThan(10_000);
    for (const why of ['recursion limit exceeded', 'duplicate field `__metadata__`', 'lone leading surrogate', 'invalid type: expected usize', 'number out of range']) {
      expect(stats.rejectReasons[why] ?? 0, why).toBeGreaterThan(10);
    }
  });
});

import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  badSafetensorsCases,
  buildSafetensorsHeader,
  makeSafetensors,
  rawSafetensors,
  tensorDataChunks,
  writeSafetensorsFile,
  type TensorSpec,
} from '../../../testkit/safetensors.js';
import { bufferRangeSource, countingRangeSource, fileRangeSource, type RangeSource } from './range-source.js';
import { VALIDATION_CODES, validateSafetensors, type ValidationResult } from './validate.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'safetensors-test-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function validateBuffer(buf: Buffer, opts?: { maxHeaderBytes?: number }): Promise<ValidationResult> {
  return validateSafetensors(bufferRangeSource(buf), opts);
}

function expectOk(r: ValidationResult): asserts r is Extract<ValidationResult, { ok: true }> {
  if (!r.ok) throw new Error(`expected a valid file, got ${r.code}: ${r.reason}`);
}

async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}

describe('bad files', () => {
  const cases = badSafetensorsCases();

  it('covers every error code the validator can return', () => {
    expect(new Set(cases.map((c) => c.expectCode))).toEqual(new Set(VALIDATION_CODES));
    expect(new Set(cases.map((c) => c.name)).size).toBe(cases.length);
  });

  it.each(cases.map((c) => [c.name, c] as const))('rejects %s', async (_name, c) => {
    const src = countingRangeSource(bufferRangeSource(c.bytes));
    const r = await validateSafetensors(src);
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.code).toBe(c.expectCode);
    expect(r.reason.length).toBeGreaterThan(20);
    // Never reads the data section: at most the 8-byte length field plus the declared header.
    const declared = c.bytes.length >= 8 ? Number(c.bytes.readBigUInt64LE(0)) : 0;
    expect(src.bytesRead).toBeLessThanOrEqual(Math.min(c.bytes.length, 8 + declared));
  });

  it('gives the specific reasons users need', async () => {
    const byName = new Map(cases.map((c) => [c.name, c.bytes]));
    const reason = async (name: string): Promise<string> => {
      const r = await validateBuffer(byName.get(name)!);
      return r.ok ? '' : r.reason;
    };
    expect(await reason('pickle protocol 2 (legacy torch.save)')).toMatch(/pickle.*convert it to \.safetensors/);
    expect(await reason('zip (torch.save .pt/.bin)')).toMatch(/ZIP archive.*torch\.save/);
    expect(await reason('Git LFS pointer')).toMatch(/Git LFS pointer/);
    expect(await reason('HTML error page')).toMatch(/HTML/);
    expect(await reason('plain text')).toMatch(/"hello, t" look like text/);
    expect(await reason('overlapping offsets')).toBe(
      'tensor "lora_unet_down_blocks_0.lora_up.weight" data_offsets [4, 12) overlap tensor ' +
        '"lora_unet_down_blocks_0.lora_down.weight" [0, 8)',
    );
    expect(await reason('hole between tensors')).toMatch(/^8 unused bytes between tensor "lora_unet_down_blocks_0\.lora_down\.weight" \(ends at 8\)/);
    expect(await reason('shape x dtype does not match the span')).toMatch(/needs 8 bytes but data_offsets \[0, 6\) span 6/);
    expect(await reason('trailing bytes after the data')).toMatch(/16 unexpected bytes after the last tensor/);
    expect(await reason('metadata with a non-string value')).toMatch(/"rank" must be a string/);
    expect(await reason('header length 200 MiB')).toMatch(/200 MiB, above the 95 MiB limit/);
    expect(await reason('shape overflow (huge dims)')).toMatch(/\[4294967296, 4294967296, 4294967296\] is impossibly large \(over 2\^64 elements\)/);
    expect(await reason('byte size overflow')).toMatch(/of F64 is impossibly large \(over 2\^64 bits\)/);
    expect(await reason('F4 tensor with an odd element count')).toMatch(/3 F4 elements \(4 bits each\)/);
  });

  it('reports a big truncation in human units', async () => {
    const header = { 'lora.weight': { dtype: 'U8', shape: [2_254_857_830], data_offsets: [0, 2_254_857_830] } };
    const r = await validateBuffer(rawSafetensors(header, 12 * 1024));
    expect(r).toMatchObject({ ok: false, code: 'data_truncated' });
    expect(r.ok ? '' : r.reason).toMatch(/header declares 2\.1 GiB \(2254857830 bytes\) of tensor data but the file has 12 KiB \(12288 bytes\)/);
  });

  it('names the tensor that overlaps, whatever the header order', async () => {
    const header = {
      c: { dtype: 'U8', shape: [4], data_offsets: [8, 12] },
      a: { dtype: 'U8', shape: [4], data_offsets: [0, 4] },
      b: { dtype: 'U8', shape: [6], data_offsets: [4, 10] },
    };
    const r = await validateBuffer(rawSafetensors(header, 12));
    expect(r).toEqual({ ok: false, code: 'offsets_overlap', reason: 'tensor "c" data_offsets [8, 12) overlap tensor "b" [4, 10)' });
  });

  it('honours a smaller maxHeaderBytes', async () => {
    const buf = makeSafetensors({ dataBytes: 256 });
    expect((await validateBuffer(buf)).ok).toBe(true);
    const r = await validateBuffer(buf, { maxHeaderBytes: 64 });
    expect(r).toMatchObject({ ok: false, code: 'header_too_large' });
  });

  it('rejects every truncation of a valid file, and never throws', async () => {
    const buf = makeSafetensors({ dataBytes: 512, metadata: { a: 'b' } });
    for (let len = 0; len < buf.length; len++) {
      const r = await validateBuffer(buf.subarray(0, len));
      expect(r.ok, `length ${len}`).toBe(false);
    }
    expect((await validateBuffer(buf)).ok).toBe(true);
  });

  it('never throws on corrupted headers and always explains a rejection', async () => {
    const buf = makeSafetensors({ dataBytes: 256, metadata: { format: 'pt' } });
    const n = Number(buf.readBigUInt64LE(0));
    let state = 12345;
    const rand = (k: number): number => {
      // mulberry32
      state = (state + 0x6d2b79f5) >>> 0;
      let t = state;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return (((t ^ (t >>> 14)) >>> 0) / 2 ** 32) * k | 0;
    };
    let rejected = 0;
    for (let i = 0; i < 2000; i++) {
      const copy = Buffer.from(buf);
      const flips = 1 + rand(3);
      for (let f = 0; f < flips; f++) copy[rand(8 + n)] = rand(256);
      const r = await validateBuffer(copy);
      if (!r.ok) {
        rejected += 1;
        expect(VALIDATION_CODES).toContain(r.code);
        expect(r.reason).not.toBe('');
      }
    }
    expect(rejected).toBeGreaterThan(1000);
  });
});

describe('valid files', () => {
  const shapes: Array<{ name: string; tensors: TensorSpec[]; dataBytes: number }> = [
    {
      name: 'F16 LoRA pair',
      tensors: [
        { name: 'lora_unet_down_blocks_0.lora_down.weight', dtype: 'F16', shape: [4, 320] },
        { name: 'lora_unet_down_blocks_0.lora_up.weight', dtype: 'F16', shape: [320, 4] },
      ],
      dataBytes: 2 * 4 * 320 * 2,
    },
    {
      name: 'BF16 with F32 alpha scalar',
      tensors: [
        { name: 'lora_te_text_model_encoder_layers_0_mlp_fc1.lora_down.weight', dtype: 'BF16', shape: [8, 768] },
        { name: 'lora_te_text_model_encoder_layers_0_mlp_fc1.lora_up.weight', dtype: 'BF16', shape: [3072, 8] },
        { name: 'lora_te_text_model_encoder_layers_0_mlp_fc1.alpha', dtype: 'F32', shape: [] },
      ],
      dataBytes: 8 * 768 * 2 + 3072 * 8 * 2 + 4,
    },
    {
      name: 'every whole-byte dtype, conv-shaped, zero-sized and sub-byte tensors',
      tensors: [
        { name: 'conv.lora_down.weight', dtype: 'F32', shape: [4, 320, 3, 3] },
        { name: 'f64', dtype: 'F64', shape: [3] },
        { name: 'i64', dtype: 'I64', shape: [1] },
        { name: 'u64', dtype: 'U64', shape: [1] },
        { name: 'c64', dtype: 'C64', shape: [2] },
        { name: 'i32', dtype: 'I32', shape: [2] },
        { name: 'u32', dtype: 'U32', shape: [2] },
        { name: 'i16', dtype: 'I16', shape: [3] },
        { name: 'u16', dtype: 'U16', shape: [3] },
        { name: 'u8', dtype: 'U8', shape: [5] },
        { name: 'i8', dtype: 'I8', shape: [5] },
        { name: 'bool', dtype: 'BOOL', shape: [7] },
        { name: 'e5m2', dtype: 'F8_E5M2', shape: [2] },
        { name: 'e4m3', dtype: 'F8_E4M3', shape: [2] },
        { name: 'e8m0', dtype: 'F8_E8M0', shape: [2] },
        { name: 'f4', dtype: 'F4', shape: [2, 3] },
        { name: 'f6', dtype: 'F6_E2M3', shape: [4] },
        { name: 'empty', dtype: 'F16', shape: [0, 16] },
        { name: 'unicode: ÄÖÜ λ 日本', dtype: 'F16', shape: [1] },
      ],
      dataBytes: 4 * 320 * 9 * 4 + 24 + 8 + 8 + 16 + 8 + 8 + 6 + 6 + 5 + 5 + 7 + 2 + 2 + 2 + 3 + 3 + 0 + 2,
    },
  ];

  for (const meta of [undefined, { format: 'pt', ss_network_dim: '4' }]) {
    it.each(shapes.map((s) => [s.name, s] as const))(`accepts %s (metadata: ${meta ? 'yes' : 'no'})`, async (_n, s) => {
      const buf = makeSafetensors({ tensors: s.tensors, metadata: meta, seed: 7 });
      const r = await validateBuffer(buf);
      expectOk(r);
      expect(r.tensorCount).toBe(s.tensors.length);
      expect(r.dataBytes).toBe(s.dataBytes);
      expect(8 + r.headerBytes + r.dataBytes).toBe(buf.length);
      expect(r.dtypes).toEqual([...new Set(s.tensors.map((t) => t.dtype))].sort());
      expect(r.metadata).toEqual(meta ?? {});
    });
  }

  it('accepts a header padded with trailing spaces', async () => {
    const tensors: TensorSpec[] = [{ name: 'lora.weight', dtype: 'F16', shape: [4, 4] }];
    const layout = buildSafetensorsHeader(tensors, undefined, { extraPadding: 1000 });
    const json = layout.prefix.subarray(8).toString('utf8');
    expect(json.endsWith(' '.repeat(900))).toBe(true);
    const buf = Buffer.concat([layout.prefix, ...tensorDataChunks(layout.tensors)]);
    const r = await validateBuffer(buf);
    expectOk(r);
    expect(r.headerBytes).toBe(layout.headerBytes);
    expect(r.dataBytes).toBe(32);
  });

  it('accepts tensors listed in any order, with __metadata__ anywhere', async () => {
    const header =
      '{"b":{"dtype":"U8","shape":[2],"data_offsets":[3,5]},"__metadata__":{"k":"v"},' +
      '"a":{"dtype":"U8","shape":[3],"data_offsets":[0,3]},"z":{"shape":[0],"dtype":"I32","data_offsets":[5,5]}}';
    const r = await validateBuffer(rawSafetensors(header, 5));
    expectOk(r);
    expect(r).toMatchObject({ tensorCount: 3, dataBytes: 5, dtypes: ['I32', 'U8'], metadata: { k: 'v' } });
  });

  it('keeps a "__proto__" metadata key as plain data', async () => {
    const header = '{"__metadata__":{"__proto__":"x","a":"b"},"t":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}';
    const r = await validateBuffer(rawSafetensors(header, 1));
    expectOk(r);
    expect(Object.keys(r.metadata).sort()).toEqual(['__proto__', 'a']);
    expect(Object.getPrototypeOf(r.metadata)).toBe(Object.prototype);
  });

  it('is not fooled by header lengths whose bytes look like a pickle or gzip magic', async () => {
    // N = 0x0280 starts with 0x80 0x02 (pickle protocol 2); N = 0x088b1f starts with 0x1f 0x8b 0x08 0x00 (gzip).
    for (const n of [0x0280, 0x0480, 0x088b1f]) {
      const layout = buildSafetensorsHeader([{ name: 'lora.weight', dtype: 'F16', shape: [8] }], undefined, { padTo: n });
      const buf = Buffer.concat([layout.prefix, Buffer.alloc(16)]);
      const r = await validateBuffer(buf);
      expectOk(r);
      expect(r.headerBytes).toBe(n);
    }
  });

  it('makeSafetensors is deterministic per seed and writes finite floats', async () => {
    const a = makeSafetensors({ dataBytes: 4096, seed: 3 });
    expect(makeSafetensors({ dataBytes: 4096, seed: 3 }).equals(a)).toBe(true);
    expect(makeSafetensors({ dataBytes: 4096, seed: 4 }).equals(a)).toBe(false);
    const r = await validateBuffer(a);
    expectOk(r);
    expect(r.dtypes).toEqual(['F16', 'F32']);
    expect(r.tensorCount).toBe(6);
    expect(r.dataBytes).toBeGreaterThan(3500);
    expect(r.dataBytes).toBeLessThanOrEqual(4096);
    // Clearing the top exponent bit keeps every float finite: bit 6 of each element's high byte is 0.
    for (const [dtype, width] of [['F16', 2], ['BF16', 2], ['F32', 4], ['F64', 8]] as const) {
      for (const count of [4096, 3]) {
        const buf = makeSafetensors({ tensors: [{ name: 'w', dtype, shape: [count] }], seed: 9 });
        const data = buf.subarray(buf.length - count * width);
        let highBitsSet = 0;
        let lowBitsSet = 0;
        for (let i = 0; i < data.length; i += width) {
          if (data[i + width - 1]! & 0x40) highBitsSet += 1;
          if (data[i]! & 0x40) lowBitsSet += 1;
        }
        expect(highBitsSet, dtype).toBe(0);
        if (count === 4096) expect(lowBitsSet, dtype).toBeGreaterThan(1500); // the rest stays random
      }
    }
  });
});

describe('read budget', () => {
  it('reads exactly 8 + N bytes of a valid file, in two reads', async () => {
    const buf = makeSafetensors({ dataBytes: 1024 * 1024, metadata: { format: 'pt' } });
    const src = countingRangeSource(bufferRangeSource(buf));
    const r = await validateSafetensors(src);
    expectOk(r);
    expect(src.bytesRead).toBe(8 + r.headerBytes);
    expect(src.reads).toBe(2);
    expect(src.bytesRead).toBeLessThan(buf.length / 100);
  });

  it('does not read the data section of a huge (virtual) file', async () => {
    // A 2 GiB source whose data section throws if touched: only the prefix is real.
    const layout = buildSafetensorsHeader(
      [
        { name: 'lora_unet_mid_block.lora_down.weight', dtype: 'BF16', shape: [64, 8_388_608] },
        { name: 'lora_unet_mid_block.lora_up.weight', dtype: 'BF16', shape: [8_388_608, 64] },
      ],
      { format: 'pt' },
    );
    const size = layout.prefix.length + layout.dataBytes;
    expect(size).toBeGreaterThan(2 ** 31);
    let bytesRead = 0;
    const src: RangeSource = {
      size,
      async read(offset, length) {
        if (offset + length > layout.prefix.length) throw new Error(`read into the data section at ${offset}+${length}`);
        bytesRead += length;
        return Buffer.from(layout.prefix.subarray(offset, offset + length));
      },
    };
    const r = await validateSafetensors(src);
    expectOk(r);
    expect(r.dataBytes).toBe(layout.dataBytes);
    expect(bytesRead).toBe(layout.prefix.length);
  });
});

describe('range sources', () => {
  it('bufferRangeSource returns copies and rejects out-of-range reads', async () => {
    const buf = Buffer.from('0123456789');
    const src = bufferRangeSource(buf);
    expect(src.size).toBe(10);
    const got = await src.read(2, 3);
    expect(got.toString()).toBe('234');
    got[0] = 0x41;
    expect(buf.toString()).toBe('0123456789');
    expect((await src.read(10, 0)).length).toBe(0);
    await expect(src.read(8, 3)).rejects.toThrow(RangeError);
    await expect(src.read(-1, 1)).rejects.toThrow(RangeError);
  });

  it('fileRangeSource reads ranges, rejects out-of-range reads and closes', async () => {
    const path = join(dir, 'small.bin');
    await writeFile(path, Buffer.from('abcdefghij'));
    const src = await fileRangeSource(path);
    try {
      expect(src.size).toBe(10);
      expect((await src.read(0, 4)).toString()).toBe('abcd');
      expect((await src.read(7, 3)).toString()).toBe('hij');
      await expect(src.read(7, 4)).rejects.toThrow(RangeError);
    } finally {
      await src.close();
    }
    await expect(src.read(0, 1)).rejects.toThrow(/closed/);
    await src.close();
  });

  it('validates bad files from disk too', async () => {
    const c = badSafetensorsCases().find((x) => x.expectCode === 'pickle')!;
    const path = join(dir, 'model.safetensors'); // the extension does not matter
    await writeFile(path, c.bytes);
    const src = await fileRangeSource(path);
    try {
      expect(await validateSafetensors(src)).toMatchObject({ ok: false, code: 'pickle' });
    } finally {
      await src.close();
    }
  });
});

describe('writeSafetensorsFile', () => {
  it('streams a valid ~50 MB file whose sha256 matches a fresh hash', async () => {
    const path = join(dir, 'big.safetensors');
    const target = 50_000_000;
    const written = await writeSafetensorsFile(path, target, { seed: 42, metadata: { ss_network_dim: '16' } });
    expect(written.sizeBytes).toBe(target);
    expect((await stat(path)).size).toBe(target);
    expect(await sha256File(path)).toBe(written.sha256);

    const src = await fileRangeSource(path);
    try {
      const counted = countingRangeSource(src);
      const r = await validateSafetensors(counted);
      expectOk(r);
      expect(r.tensorCount).toBe(written.tensorCount);
      expect(r.dataBytes).toBe(written.dataBytes);
      expect(r.headerBytes).toBe(written.headerBytes);
      expect(r.metadata).toMatchObject({ format: 'pt', ss_network_dim: '16' });
      expect(counted.bytesRead).toBe(8 + r.headerBytes);
      expect(counted.bytesRead).toBeLessThan(4096);
    } finally {
      await src.close();
    }
  });

  it('is deterministic per seed and handles sizes that are not a multiple of 8 or are tiny', async () => {
    const a = await writeSafetensorsFile(join(dir, 'a.safetensors'), 1_000_003, { seed: 1, chunkBytes: 64 * 1024 });
    const b = await writeSafetensorsFile(join(dir, 'b.safetensors'), 1_000_003, { seed: 1 });
    const c = await writeSafetensorsFile(join(dir, 'c.safetensors'), 1_000_003, { seed: 2 });
    expect(a.sha256).toBe(b.sha256);
    expect(c.sha256).not.toBe(a.sha256);
    expect(a.sizeBytes).toBeLessThanOrEqual(1_000_003);
    expect(a.sizeBytes).toBeGreaterThan(1_000_003 - 8);
    const tiny = await writeSafetensorsFile(join(dir, 'tiny.safetensors'), 10);
    expect(tiny.sizeBytes).toBeGreaterThan(10); // smallest valid LoRA-like file
    for (const name of ['a', 'c', 'tiny']) {
      const src = await fileRangeSource(join(dir, `${name}.safetensors`));
      try {
        expect((await validateSafetensors(src)).ok).toBe(true);
      } finally {
        await src.close();
      }
    }
  });
});

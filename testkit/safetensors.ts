// Test scaffolding (tests, demo, benchmarks), kept out of functions/ so the Functions package does not ship it.
// Builds safetensors files: small valid ones in memory, large valid ones streamed to disk, and a catalogue of crafted
// bad files with the validator code each must produce.
// Tensor data is a deterministic keystream (AES-256-CTR keyed by the seed), so files are reproducible and cheap to
// generate at GB scale; float tensors get their top exponent bit cleared so every value is finite with |x| < 2.
import { createCipheriv, createHash, type Cipher } from 'node:crypto';
import { open, unlink } from 'node:fs/promises';
import { endianness } from 'node:os';
import { dtypeBits, type ValidationCode } from '../functions/core/safetensors/validate.js';

export interface TensorSpec {
  name: string;
  dtype: string;
  shape: number[];
}

export interface LaidOutTensor extends TensorSpec {
  begin: number;
  end: number;
}

export interface SafetensorsLayout {
  /** The first bytes of the file: the u64 LE header length followed by the space-padded JSON header. */
  prefix: Buffer;
  /** N, the padded JSON header length. */
  headerBytes: number;
  /** Size of the data section that must follow the prefix. */
  dataBytes: number;
  /** Tensors in file order with their data_offsets. */
  tensors: LaidOutTensor[];
}

export interface HeaderOptions {
  /** Pad the header with spaces to exactly this many bytes (must be >= the JSON length). */
  padTo?: number;
  /** Otherwise: add this many spaces, then pad to a multiple of 8 (the reference writer aligns to 8). Default 0. */
  extraPadding?: number;
}

/** Bytes a tensor occupies; throws for unknown dtypes, bad dims or sub-byte tensors that do not fill whole bytes. */
export function tensorByteLength(t: TensorSpec): number {
  const bits = dtypeBits(t.dtype);
  if (bits === undefined) throw new Error(`unknown dtype ${t.dtype} for tensor ${t.name}`);
  let total = BigInt(bits);
  for (const d of t.shape) {
    if (!Number.isSafeInteger(d) || d < 0) throw new Error(`bad dimension ${d} in tensor ${t.name}`);
    total *= BigInt(d);
  }
  if (total % 8n !== 0n) throw new Error(`tensor ${t.name}: ${t.dtype} elements do not fill whole bytes`);
  const bytes = total / 8n;
  if (bytes > BigInt(Number.MAX_SAFE_INTEGER)) throw new Error(`tensor ${t.name} is too large`);
  return Number(bytes);
}

/** Lays tensors out back to back in the given order and encodes the header. */
export function buildSafetensorsHeader(
  tensors: TensorSpec[],
  metadata?: Record<string, string>,
  opts: HeaderOptions = {},
): SafetensorsLayout {
  const seen = new Set<string>();
  const laid: LaidOutTensor[] = [];
  let offset = 0;
  for (const t of tensors) {
    if (t.name === '__metadata__' || seen.has(t.name)) throw new Error(`duplicate or reserved tensor name ${t.name}`);
    seen.add(t.name);
    const len = tensorByteLength(t);
    laid.push({ name: t.name, dtype: t.dtype, shape: [...t.shape], begin: offset, end: offset + len });
    offset += len;
  }
  // Built by hand rather than via an object so any name (even "__proto__") round-trips as a plain key.
  const parts: string[] = [];
  if (metadata !== undefined) parts.push(`"__metadata__":${JSON.stringify(metadata)}`);
  for (const t of laid) {
    parts.push(`${JSON.stringify(t.name)}:${JSON.stringify({ dtype: t.dtype, shape: t.shape, data_offsets: [t.begin, t.end] })}`);
  }
  const json = Buffer.from(`{${parts.join(',')}}`, 'utf8');
  let n: number;
  if (opts.padTo !== undefined) {
    if (opts.padTo < json.length) throw new Error(`padTo ${opts.padTo} is smaller than the header JSON (${json.length} bytes)`);
    n = opts.padTo;
  } else {
    n = Math.ceil((json.length + (opts.extraPadding ?? 0)) / 8) * 8;
  }
  const prefix = Buffer.alloc(8 + n, 0x20);
  prefix.writeBigUInt64LE(BigInt(n), 0);
  json.copy(prefix, 8);
  return { prefix, headerBytes: n, dataBytes: offset, tensors: laid };
}

const BLOCKS = ['q', 'k', 'v', 'out_0'];

/** kohya-style LoRA module name number i, e.g. lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q. */
export function loraModuleName(i: number): string {
  return `lora_unet_down_blocks_${Math.floor(i / BLOCKS.length)}_attentions_0_transformer_blocks_0_attn1_to_${BLOCKS[i % BLOCKS.length]}`;
}

export interface LoraLayoutOptions {
  /** F16 (default), BF16 or F32. */
  dtype?: string;
  /** LoRA rank. Default 4. */
  rank?: number;
  /** Number of LoRA modules (each: lora_down [rank, d], lora_up [d, rank], alpha F32 scalar). Default 2. */
  modules?: number;
}

/** LoRA-like tensors whose total size is at most about `dataBytes` (at least one element per dimension). */
export function loraTensors(dataBytes: number, opts: LoraLayoutOptions = {}): TensorSpec[] {
  const dtype = opts.dtype ?? 'F16';
  const rank = opts.rank ?? 4;
  const modules = opts.modules ?? 2;
  const bits = dtypeBits(dtype);
  if (bits === undefined || bits % 8 !== 0) throw new Error(`loraTensors needs a whole-byte dtype, got ${dtype}`);
  if (!Number.isSafeInteger(rank) || rank < 1 || !Number.isSafeInteger(modules) || modules < 1) {
    throw new Error('rank and modules must be positive integers');
  }
  const esize = bits / 8;
  const budget = dataBytes - modules * 4; // alphas
  const d = Math.max(1, Math.floor(budget / (modules * 2 * rank * esize)));
  const out: TensorSpec[] = [];
  for (let i = 0; i < modules; i++) {
    const m = loraModuleName(i);
    out.push({ name: `${m}.lora_down.weight`, dtype, shape: [rank, d] });
    out.push({ name: `${m}.lora_up.weight`, dtype, shape: [d, rank] });
    out.push({ name: `${m}.alpha`, dtype: 'F32', shape: [] });
  }
  return out;
}

const FLOAT_WIDTH: Readonly<Record<string, number>> = { F16: 2, BF16: 2, F32: 4, F64: 8, C64: 4 };

const LITTLE_ENDIAN = endianness() === 'LE';

/**
 * Clears bit 6 of each element's most significant byte (little-endian) - the top exponent bit of F16/BF16/F32/F64 -
 * so every value is finite with |x| < 2. `chunk` must start on an element boundary.
 */
function clearTopExponentBit(chunk: Buffer, width: number): void {
  if (LITTLE_ENDIAN && (width === 2 || width === 4) && chunk.byteOffset % 4 === 0 && chunk.length % 4 === 0) {
    // Word-at-a-time: about twice as fast as the byte loop at GB scale.
    const words = new Uint32Array(chunk.buffer, chunk.byteOffset, chunk.length / 4);
    const mask = width === 2 ? 0xbfffbfff : 0xbfffffff;
    for (let i = 0; i < words.length; i++) words[i]! &= mask;
    return;
  }
  for (let i = width - 1; i < chunk.length; i += width) chunk[i]! &= 0xbf;
}

function keystream(seed: number): Cipher {
  const key = createHash('sha256').update(`lora-router-safetensors:${seed}`).digest();
  return createCipheriv('aes-256-ctr', key, Buffer.alloc(16));
}

/** Yields the data section in chunks of at most chunkBytes, tensor by tensor. */
export function* tensorDataChunks(tensors: LaidOutTensor[], seed = 1, chunkBytes = 4 * 1024 * 1024): Generator<Buffer> {
  if (!Number.isSafeInteger(chunkBytes) || chunkBytes < 8 || chunkBytes % 8 !== 0) {
    throw new Error('chunkBytes must be a positive multiple of 8');
  }
  const cipher = keystream(seed);
  const zeros = Buffer.alloc(chunkBytes);
  for (const t of tensors) {
    const width = FLOAT_WIDTH[t.dtype];
    for (let done = 0, len = t.end - t.begin; done < len; ) {
      const n = Math.min(chunkBytes, len - done);
      const chunk = cipher.update(zeros.subarray(0, n));
      if (width !== undefined) clearTopExponentBit(chunk, width);
      done += n;
      yield chunk;
    }
  }
}

export interface MakeOptions {
  /** About this many bytes of tensor data when `tensors` is not given. Default 64 KiB. */
  dataBytes?: number;
  /** Exact tensors (laid out in this order); otherwise LoRA-like tensors from loraTensors(). */
  tensors?: TensorSpec[];
  metadata?: Record<string, string>;
  seed?: number;
  /** dtype/rank/modules for the generated LoRA tensors. */
  lora?: LoraLayoutOptions;
  /** Extra header space padding (see HeaderOptions). */
  header?: HeaderOptions;
}

/** A valid small safetensors file in memory. */
export function makeSafetensors(opts: MakeOptions = {}): Buffer {
  const tensors = opts.tensors ?? loraTensors(opts.dataBytes ?? 64 * 1024, opts.lora);
  const layout = buildSafetensorsHeader(tensors, opts.metadata, opts.header);
  return Buffer.concat([layout.prefix, ...tensorDataChunks(layout.tensors, opts.seed ?? 1)]);
}

export interface WriteOptions {
  seed?: number;
  metadata?: Record<string, string>;
  lora?: LoraLayoutOptions;
  /** Write size. Default 4 MiB. */
  chunkBytes?: number;
}

export interface WrittenFile {
  sizeBytes: number;
  sha256: string;
  headerBytes: number;
  dataBytes: number;
  tensorCount: number;
}

/**
 * Streams a valid LoRA-like safetensors file of about `targetBytes` to `path` (exactly targetBytes when it is a
 * multiple of 8 and large enough for the header), hashing as it writes. Memory use is one chunk. On failure the
 * partial file is removed.
 */
export async function writeSafetensorsFile(path: string, targetBytes: number, opts: WriteOptions = {}): Promise<WrittenFile> {
  if (!Number.isSafeInteger(targetBytes) || targetBytes < 0) throw new Error(`targetBytes must be a non-negative integer`);
  const metadata = { format: 'pt', ss_network_module: 'networks.lora', ...opts.metadata };
  const lora = { modules: 2, rank: 16, ...opts.lora };
  // Header size depends on the dimension digits; a first guess with the full budget is an upper bound.
  const guess = buildSafetensorsHeader(loraTensors(targetBytes - 8, lora), metadata);
  let layout = buildSafetensorsHeader(loraTensors(targetBytes - 8 - guess.headerBytes, lora), metadata);
  const residual = targetBytes - 8 - layout.headerBytes - layout.dataBytes;
  if (residual >= 8) {
    // Absorb the rounding remainder into header padding, keeping the data section 8-byte aligned.
    layout = buildSafetensorsHeader(loraTensors(targetBytes - 8 - guess.headerBytes, lora), metadata, {
      padTo: layout.headerBytes + Math.floor(residual / 8) * 8,
    });
  }

  const hash = createHash('sha256');
  const fh = await open(path, 'w');
  let size = 0;
  try {
    const write = async (buf: Buffer): Promise<void> => {
      hash.update(buf);
      for (let off = 0; off < buf.length; ) {
        const { bytesWritten } = await fh.write(buf, off, buf.length - off);
        off += bytesWritten;
      }
      size += buf.length;
    };
    await write(layout.prefix);
    for (const chunk of tensorDataChunks(layout.tensors, opts.seed ?? 1, opts.chunkBytes ?? 4 * 1024 * 1024)) {
      await write(chunk);
    }
    await fh.close();
  } catch (err) {
    await fh.close().catch(() => undefined);
    await unlink(path).catch(() => undefined);
    throw err;
  }
  return {
    sizeBytes: size,
    sha256: hash.digest('hex'),
    headerBytes: layout.headerBytes,
    dataBytes: layout.dataBytes,
    tensorCount: layout.tensors.length,
  };
}

/** A file from a raw header (string, bytes or a JSON value), data bytes (or a zero count) and optionally a lying length field. */
export function rawSafetensors(header: string | Buffer | object, data: Buffer | number = 0, declaredHeaderBytes?: number | bigint): Buffer {
  const h = Buffer.isBuffer(header) ? header : Buffer.from(typeof header === 'string' ? header : JSON.stringify(header), 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(declaredHeaderBytes ?? h.length));
  return Buffer.concat([len, h, typeof data === 'number' ? Buffer.alloc(data) : data]);
}

export interface BadCase {
  name: string;
  bytes: Buffer;
  expectCode: ValidationCode;
}

function tensor(dtype: string, shape: unknown, begin: unknown, end: unknown): object {
  return { dtype, shape, data_offsets: [begin, end] };
}

/** Crafted invalid files, each with the code validateSafetensors must return. */
export function badSafetensorsCases(): BadCase[] {
  const valid = makeSafetensors({ dataBytes: 4096, metadata: { format: 'pt' } });
  const w = 'lora_unet_down_blocks_0.lora_down.weight';
  const u = 'lora_unet_down_blocks_0.lora_up.weight';
  const big = 2 ** 32;
  const cases: BadCase[] = [
    { name: 'empty file', bytes: Buffer.alloc(0), expectCode: 'empty_file' },
    { name: 'shorter than the length field', bytes: Buffer.from([0x01, 0x00, 0x00]), expectCode: 'too_small' },
    { name: 'truncated data (incomplete upload)', bytes: valid.subarray(0, valid.length - 100), expectCode: 'data_truncated' },
    { name: 'truncated to the header only', bytes: valid.subarray(0, 8 + valid.readUInt32LE(0)), expectCode: 'data_truncated' },
    { name: 'header length 200 MiB', bytes: rawSafetensors('{}', 0, 200 * 1024 * 1024), expectCode: 'header_too_large' },
    { name: 'header length u64 max', bytes: rawSafetensors('{}', 0, 2n ** 64n - 1n), expectCode: 'header_too_large' },
    { name: 'header length 0', bytes: rawSafetensors('', 16), expectCode: 'header_too_small' },
    { name: 'header length 1', bytes: rawSafetensors('{', 16), expectCode: 'header_too_small' },
    { name: 'header length beyond the file', bytes: rawSafetensors('{}', 0, 5000), expectCode: 'header_beyond_file' },
    { name: 'truncated inside the header', bytes: valid.subarray(0, 40), expectCode: 'header_beyond_file' },
    { name: 'bad JSON', bytes: rawSafetensors(`{"${w}": {"dtype": "F16",`), expectCode: 'header_bad_json' },
    { name: 'NUL-padded header', bytes: rawSafetensors(Buffer.concat([Buffer.from('{}'), Buffer.alloc(6)])), expectCode: 'header_bad_json' },
    {
      name: 'UTF-8 byte-order mark before the header',
      bytes: rawSafetensors(Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(JSON.stringify({ a: tensor('U8', [1], 0, 1) }))]), 1),
      expectCode: 'header_bad_json',
    },
    { name: 'header is an array', bytes: rawSafetensors([tensor('F16', [1], 0, 2)], 2), expectCode: 'header_not_object' },
    { name: 'header is a string', bytes: rawSafetensors('"lora"'), expectCode: 'header_not_object' },
    { name: 'header is null', bytes: rawSafetensors('null'), expectCode: 'header_not_object' },
    { name: 'nesting deeper than 127 (serde_json)', bytes: rawSafetensors(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"x":${'['.repeat(126)}${']'.repeat(126)}}}`, 1), expectCode: 'header_too_deep' },
    {
      name: '__metadata__ with 10 001 entries',
      bytes: rawSafetensors({ __metadata__: Object.fromEntries(Array.from({ length: 10_001 }, (_, i) => [`k${i}`, 'v'])), a: tensor('U8', [1], 0, 1) }, 1),
      expectCode: 'header_too_many_entries',
    },
    {
      name: 'non-UTF-8 header',
      bytes: rawSafetensors(Buffer.concat([Buffer.from('{"lora_'), Buffer.from([0xff, 0xfe]), Buffer.from('":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}')]), 1),
      expectCode: 'header_not_utf8',
    },
    {
      name: 'UTF-16 surrogate encoded in header (CESU-8)',
      bytes: rawSafetensors(Buffer.concat([Buffer.from('{"a'), Buffer.from([0xed, 0xa0, 0x80]), Buffer.from('":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}')]), 1),
      expectCode: 'header_not_utf8',
    },
    { name: 'unknown dtype F12', bytes: rawSafetensors({ [w]: tensor('F12', [2], 0, 4) }, 4), expectCode: 'unknown_dtype' },
    { name: 'lowercase dtype float16', bytes: rawSafetensors({ [w]: tensor('float16', [2], 0, 4) }, 4), expectCode: 'unknown_dtype' },
    { name: 'tensor entry is a number', bytes: rawSafetensors({ [w]: 42 }), expectCode: 'bad_tensor_entry' },
    { name: 'tensor without dtype', bytes: rawSafetensors({ [w]: { shape: [2], data_offsets: [0, 4] } }, 4), expectCode: 'bad_tensor_entry' },
    { name: 'negative dimension', bytes: rawSafetensors({ [w]: tensor('F16', [-1, 2], 0, 4) }, 4), expectCode: 'bad_shape' },
    { name: 'fractional dimension', bytes: rawSafetensors({ [w]: tensor('F16', [1.5], 0, 3) }, 3), expectCode: 'bad_shape' },
    { name: 'shape is a string', bytes: rawSafetensors({ [w]: tensor('F16', '4x4', 0, 32) }, 32), expectCode: 'bad_shape' },
    { name: 'offsets end before begin', bytes: rawSafetensors({ [w]: tensor('U8', [0], 8, 0) }, 8), expectCode: 'bad_offsets' },
    { name: 'offsets are strings', bytes: rawSafetensors({ [w]: tensor('U8', [8], '0', '8') }, 8), expectCode: 'bad_offsets' },
    {
      name: 'offsets beyond 2^64 - 1',
      bytes: rawSafetensors(`{"${w}":{"dtype":"U8","shape":[0],"data_offsets":[18446744073709551616,18446744073709551616]}}`),
      expectCode: 'bad_offsets',
    },
    { name: 'one offset only', bytes: rawSafetensors({ [w]: { dtype: 'U8', shape: [8], data_offsets: [0] } }, 8), expectCode: 'bad_offsets' },
    {
      name: 'overlapping offsets',
      bytes: rawSafetensors({ [w]: tensor('F16', [4], 0, 8), [u]: tensor('F16', [4], 4, 12) }, 12),
      expectCode: 'offsets_overlap',
    },
    {
      name: 'hole between tensors',
      bytes: rawSafetensors({ [w]: tensor('F16', [4], 0, 8), [u]: tensor('F16', [4], 16, 24) }, 24),
      expectCode: 'offsets_hole',
    },
    { name: 'hole before the first tensor', bytes: rawSafetensors({ [w]: tensor('F16', [4], 8, 16) }, 16), expectCode: 'offsets_hole' },
    { name: 'shape x dtype does not match the span', bytes: rawSafetensors({ [w]: tensor('F16', [4], 0, 6) }, 6), expectCode: 'tensor_size_mismatch' },
    { name: 'trailing bytes after the data', bytes: Buffer.concat([valid, Buffer.alloc(16)]), expectCode: 'trailing_bytes' },
    {
      name: 'metadata with a non-string value',
      bytes: rawSafetensors({ __metadata__: { format: 'pt', rank: 16 }, [w]: tensor('U8', [1], 0, 1) }, 1),
      expectCode: 'bad_metadata',
    },
    { name: 'metadata is an array', bytes: rawSafetensors({ __metadata__: ['pt'], [w]: tensor('U8', [1], 0, 1) }, 1), expectCode: 'bad_metadata' },
    { name: 'shape overflow (huge dims)', bytes: rawSafetensors({ [w]: tensor('F16', [big, big, big], 0, 8) }, 8), expectCode: 'shape_overflow' },
    { name: 'byte size overflow', bytes: rawSafetensors({ [w]: tensor('F64', [2 ** 31, 2 ** 31], 0, 8) }, 8), expectCode: 'shape_overflow' },
    { name: 'F4 tensor with an odd element count', bytes: rawSafetensors({ [w]: tensor('F4', [3], 0, 2) }, 2), expectCode: 'misaligned_sub_byte' },
    { name: 'no tensors, metadata only', bytes: rawSafetensors({ __metadata__: { format: 'pt' } }), expectCode: 'no_tensors' },
    { name: 'empty header object', bytes: rawSafetensors('{}'), expectCode: 'no_tensors' },
    {
      // torch.save legacy format: protocol 2, then the LONG1 magic number.
      name: 'pickle protocol 2 (legacy torch.save)',
      bytes: Buffer.from([0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e]),
      expectCode: 'pickle',
    },
    {
      name: 'pickle protocol 4 (framed)',
      bytes: Buffer.concat([Buffer.from([0x80, 0x04, 0x95, 0x34, 0x12, 0, 0, 0, 0, 0, 0, 0x7d, 0x94]), Buffer.alloc(64, 0x28), Buffer.from('.')]),
      expectCode: 'pickle',
    },
    { name: 'pickle, 2 bytes', bytes: Buffer.from([0x80, 0x05]), expectCode: 'pickle' },
    {
      name: 'zip (torch.save .pt/.bin)',
      bytes: Buffer.concat([Buffer.from([0x50, 0x4b, 0x03, 0x04, 0x00, 0x00, 0x08, 0x08, 0x00, 0x00]), Buffer.from('archive/data.pkl'), Buffer.alloc(48)]),
      expectCode: 'zip_archive',
    },
    {
      name: 'zip with a plausible-looking length',
      // Version 0 and flags 0 make the length field read as 64 MiB, under the header limit.
      bytes: Buffer.concat([Buffer.from([0x50, 0x4b, 0x03, 0x04, 0, 0, 0, 0]), Buffer.alloc(248)]),
      expectCode: 'zip_archive',
    },
    { name: 'empty zip archive', bytes: Buffer.from([0x50, 0x4b, 0x05, 0x06, ...new Array<number>(18).fill(0)]), expectCode: 'zip_archive' },
    {
      name: 'gzip',
      bytes: Buffer.from([0x1f, 0x8b, 0x08, 0x00, 0x5e, 0x1a, 0x7c, 0x66, 0x00, 0x03, 0x4b, 0x4c, 0x4a, 0x06, 0x00]),
      expectCode: 'gzip',
    },
    {
      // mtime 0 (gzip -n) makes the length field read as 559,903 bytes, which fits in the file: the "header" is
      // rejected only because it does not start with '{'.
      name: 'gzip without timestamp, big enough to hold its "header"',
      bytes: Buffer.concat([Buffer.from([0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x03]), Buffer.alloc(0x088b1f, 0x5a)]),
      expectCode: 'gzip',
    },
    { name: 'GGUF', bytes: Buffer.concat([Buffer.from('GGUF'), Buffer.from([3, 0, 0, 0]), Buffer.alloc(32)]), expectCode: 'gguf' },
    { name: 'plain text', bytes: Buffer.from('hello, this is not a model\n'), expectCode: 'text_file' },
    { name: 'short text', bytes: Buffer.from('lora'), expectCode: 'text_file' },
    { name: 'HTML error page', bytes: Buffer.from('<!DOCTYPE html><html><body>403 Forbidden</body></html>\n'), expectCode: 'text_file' },
    {
      name: 'Git LFS pointer',
      bytes: Buffer.from(`version https://git-lfs.github.com/spec/v1\noid sha256:${'ab'.repeat(32)}\nsize 151108831\n`),
      expectCode: 'text_file',
    },
    { name: 'JSON file', bytes: Buffer.from('{"lora_unet": {"dtype": "F16"}}'), expectCode: 'text_file' },
  ];
  return cases;
}

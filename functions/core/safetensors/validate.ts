// Content validation of an uploaded LoRA file: it must be a well-formed safetensors file, whatever its name says.
// Reads only the 8-byte length prefix and the JSON header (8 + N bytes), never the tensor data, so a 2 GB upload
// costs two small ranged reads. Format: u64 LE header length N, N bytes of UTF-8 JSON header, then the data section,
// which the header's data_offsets must tile exactly (the reference implementation's rules, huggingface/safetensors).
import { formatBytes } from '../../../contract/bytes.js';
import type { RangeSource } from './range-source.js';

export const DEFAULT_MAX_HEADER_BYTES = 100 * 1024 * 1024;

/** Element width in bits. F4/F6 are sub-byte: a tensor of them must pack into whole bytes. */
export const DTYPE_BITS: Readonly<Record<string, number>> = Object.freeze({
  BOOL: 8,
  F4: 4,
  F6_E2M3: 6,
  F6_E3M2: 6,
  U8: 8,
  I8: 8,
  F8_E5M2: 8,
  F8_E4M3: 8,
  F8_E8M0: 8,
  I16: 16,
  U16: 16,
  F16: 16,
  BF16: 16,
  I32: 32,
  U32: 32,
  F32: 32,
  C64: 64,
  F64: 64,
  I64: 64,
  U64: 64,
});

export function dtypeBits(dtype: string): number | undefined {
  return Object.hasOwn(DTYPE_BITS, dtype) ? DTYPE_BITS[dtype] : undefined;
}

export const VALIDATION_CODES = [
  'empty_file',
  'too_small',
  'zip_archive',
  'pickle',
  'gzip',
  'gguf',
  'text_file',
  'header_too_large',
  'header_too_small',
  'header_beyond_file',
  'header_not_utf8',
  'header_bad_json',
  'header_not_object',
  'header_bad_start',
  'bad_metadata',
  'bad_tensor_entry',
  'unknown_dtype',
  'bad_shape',
  'bad_offsets',
  'shape_overflow',
  'misaligned_sub_byte',
  'tensor_size_mismatch',
  'offsets_overlap',
  'offsets_hole',
  'data_truncated',
  'trailing_bytes',
  'no_tensors',
] as const;
export type ValidationCode = (typeof VALIDATION_CODES)[number];

export interface ValidationOk {
  ok: true;
  /** N, the JSON header length (including any space padding). */
  headerBytes: number;
  /** Size of the data section: file size - 8 - N. */
  dataBytes: number;
  tensorCount: number;
  /** Distinct dtypes, sorted. */
  dtypes: string[];
  /** `__metadata__`, or {} when absent. */
  metadata: Record<string, string>;
}
export interface ValidationFailure {
  ok: false;
  code: ValidationCode;
  /** A sentence for the uploader. */
  reason: string;
}
export type ValidationResult = ValidationOk | ValidationFailure;

export interface ValidateOptions {
  /** Reject headers longer than this. Default 100 MiB. */
  maxHeaderBytes?: number;
}

function fail(code: ValidationCode, reason: string): ValidationFailure {
  return { ok: false, code, reason };
}

/** "12 KiB (12288 bytes)", or just "12 bytes" when small. */
function bytesExact(n: number): string {
  return n < 1024 ? formatBytes(n) : `${formatBytes(n)} (${n} bytes)`;
}

/** A tensor name or dtype from an untrusted header, quoted and cut short so a reason stays a readable sentence. */
function q(s: string): string {
  const cut = s.length > 100 ? `${s.slice(0, 97)}...` : s;
  return JSON.stringify(cut);
}

function shapeStr(dims: number[]): string {
  return `[${dims.slice(0, 8).join(', ')}${dims.length > 8 ? `, ... (${dims.length} dims)` : ''}]`;
}

function describeValue(v: unknown): string {
  if (v === undefined) return 'missing';
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'string') return `the string ${q(v)}`;
  if (typeof v === 'object') return 'an object';
  return `${typeof v} ${String(v).slice(0, 40)}`;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function printableAscii(bytes: Buffer): boolean {
  if (bytes.length === 0) return false;
  for (const b of bytes) {
    const ok = (b >= 0x20 && b <= 0x7e) || b === 0x09 || b === 0x0a || b === 0x0d;
    if (!ok) return false;
  }
  return true;
}

/**
 * Recognises common wrong uploads from the first (up to 8) bytes. The caller only trusts a match when the bytes
 * cannot also be the start of a real safetensors file (see validateSafetensors), because e.g. a header of exactly
 * 0x280 bytes also starts with 0x80 0x02, like a protocol-2 pickle.
 */
export function sniffWrongFormat(head: Buffer): ValidationFailure | undefined {
  const b = head;
  if (b.length >= 4 && b[0] === 0x50 && b[1] === 0x4b && ((b[2] === 0x03 && b[3] === 0x04) || (b[2] === 0x05 && b[3] === 0x06))) {
    return fail(
      'zip_archive',
      'not a safetensors file: it is a ZIP archive (this is also how torch.save writes .pt/.pth/.bin/.ckpt files); ' +
        'convert the weights to .safetensors, or upload the .safetensors file itself rather than an archive',
    );
  }
  if (b.length >= 2 && b[0] === 0x80 && b[1]! >= 2 && b[1]! <= 5) {
    return fail(
      'pickle',
      `not a safetensors file: looks like a Python pickle (protocol ${b[1]}, e.g. a legacy PyTorch .pt/.ckpt); ` +
        'pickles can run code when loaded, so they are not accepted; convert it to .safetensors',
    );
  }
  if (b.length >= 2 && b[0] === 0x1f && b[1] === 0x8b) {
    return fail('gzip', 'not a safetensors file: it is gzip-compressed; decompress it and upload the .safetensors file');
  }
  if (b.length >= 4 && b.subarray(0, 4).toString('latin1') === 'GGUF') {
    return fail('gguf', 'not a safetensors file: it is a GGUF file (llama.cpp format); upload the LoRA as .safetensors');
  }
  if (printableAscii(b)) {
    const shown = JSON.stringify(b.toString('latin1'));
    const hint = b.toString('latin1').startsWith('version ')
      ? ' (it looks like a Git LFS pointer: fetch the real file with `git lfs pull`)'
      : b[0] === 0x3c
        ? ' (it looks like an HTML or XML page, perhaps an error page saved instead of the download)'
        : '';
    return fail(
      'text_file',
      `not a safetensors file: its first bytes ${shown} look like text, not a binary header length${hint}`,
    );
  }
  return undefined;
}

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

interface TensorEntry {
  name: string;
  dtype: string;
  begin: number;
  end: number;
}

/**
 * Checks that `src` is a well-formed safetensors file with at least one tensor. Reads only bytes [0, 8 + N).
 * Content problems come back as { ok: false, code, reason }; a failing `src.read` (network, permissions) throws
 * instead, so a transient storage error is never reported to the user as a bad file.
 */
export async function validateSafetensors(src: RangeSource, opts: ValidateOptions = {}): Promise<ValidationResult> {
  const maxHeader = opts.maxHeaderBytes ?? DEFAULT_MAX_HEADER_BYTES;
  if (!Number.isSafeInteger(maxHeader) || maxHeader < 2) throw new TypeError(`maxHeaderBytes must be an integer >= 2, got ${maxHeader}`);
  const size = src.size;
  if (!Number.isSafeInteger(size) || size < 0) throw new TypeError(`RangeSource.size must be a non-negative integer, got ${size}`);

  if (size === 0) return fail('empty_file', 'the file is empty (0 bytes); the upload may have failed');

  const head = await readExact(src, 0, Math.min(8, size));
  const wrongFormat = sniffWrongFormat(head);
  if (size < 8) {
    return (
      wrongFormat ??
      fail('too_small', `the file is only ${formatBytes(size)}; a safetensors file starts with an 8-byte header length`)
    );
  }

  const declared = head.readBigUInt64LE(0);
  if (declared > BigInt(maxHeader)) {
    return (
      wrongFormat ??
      fail(
        'header_too_large',
        `not a usable safetensors file: the header length field says ${formatBytes(declared)}, ` +
          `above the ${formatBytes(maxHeader)} limit`,
      )
    );
  }
  const n = Number(declared);
  if (n < 2) {
    return (
      wrongFormat ??
      fail('header_too_small', `not a usable safetensors file: the header length field says ${formatBytes(n)}, too short for a JSON header`)
    );
  }
  if (8 + n > size) {
    return (
      wrongFormat ??
      fail(
        'header_beyond_file',
        `the header length field says ${formatBytes(n)} but the file has only ${formatBytes(size - 8)} after it; ` +
          'the file is truncated or not a safetensors file',
      )
    );
  }

  const header = await readExact(src, 8, n);
  // A real header starts with '{'; only then can a magic-number match be a coincidence of the length bytes.
  if (wrongFormat && header[0] !== 0x7b) return wrongFormat;
  return checkHeader(header, size - 8 - n);
}

async function readExact(src: RangeSource, offset: number, length: number): Promise<Buffer> {
  const buf = await src.read(offset, length);
  if (buf.length !== length) throw new Error(`RangeSource returned ${buf.length} bytes for a ${length}-byte read at ${offset}`);
  return buf;
}

function checkHeader(header: Buffer, dataSize: number): ValidationResult {
  const n = header.length;
  let text: string;
  try {
    // ignoreBOM keeps a byte-order mark in the text, so JSON.parse rejects it like the reference reader does.
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(header);
  } catch {
    return fail('header_not_utf8', `the JSON header (${formatBytes(n)}) is not valid UTF-8 text; the file is corrupt`);
  }

  if (text.startsWith('\uFEFF')) {
    return fail('header_bad_json', 'the header starts with a UTF-8 byte-order mark, which safetensors does not allow');
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    const detail = err instanceof Error ? err.message.slice(0, 160) : String(err);
    return fail('header_bad_json', `the header is not valid JSON (${detail}); the file is corrupt or not safetensors`);
  }
  if (!isPlainObject(parsed)) {
    return fail('header_not_object', `the header must be a JSON object mapping tensor names to tensors, but it is ${describeValue(parsed)}`);
  }
  if (header[0] !== 0x7b) {
    return fail('header_bad_start', "the header must begin with '{' (only trailing space padding is allowed)");
  }

  let metadata: Record<string, string> = {};
  const tensors: TensorEntry[] = [];
  for (const [name, value] of Object.entries(parsed)) {
    if (name === '__metadata__') {
      if (!isPlainObject(value)) {
        return fail('bad_metadata', `__metadata__ must be an object of string values, but it is ${describeValue(value)}`);
      }
      for (const [k, v] of Object.entries(value)) {
        if (typeof v !== 'string') {
          return fail('bad_metadata', `__metadata__ value for ${q(k)} must be a string, but it is ${describeValue(v)}`);
        }
      }
      // fromEntries defines own properties, so a "__proto__" key stays data and cannot touch a prototype.
      metadata = Object.fromEntries(Object.entries(value as Record<string, string>));
      continue;
    }
    const t = checkTensor(name, value);
    if ('ok' in t) return t;
    tensors.push(t);
  }

  if (tensors.length === 0) {
    return fail('no_tensors', 'the file contains no tensors, so it cannot be a LoRA');
  }

  const tiled = checkTiling(tensors, dataSize);
  if (tiled) return tiled;

  return {
    ok: true,
    headerBytes: n,
    dataBytes: dataSize,
    tensorCount: tensors.length,
    dtypes: [...new Set(tensors.map((t) => t.dtype))].sort(),
    metadata,
  };
}

function checkTensor(name: string, value: unknown): TensorEntry | ValidationFailure {
  if (!isPlainObject(value)) {
    return fail('bad_tensor_entry', `tensor ${q(name)} must be an object with dtype, shape and data_offsets, but it is ${describeValue(value)}`);
  }
  const { dtype, shape, data_offsets: offsets } = value;
  if (typeof dtype !== 'string') {
    return fail('bad_tensor_entry', `tensor ${q(name)} has no dtype string (dtype is ${describeValue(dtype)})`);
  }
  const bits = dtypeBits(dtype);
  if (bits === undefined) {
    return fail('unknown_dtype', `tensor ${q(name)} has unknown dtype ${q(dtype)}; known: ${Object.keys(DTYPE_BITS).join(', ')}`);
  }
  if (!Array.isArray(shape)) {
    return fail('bad_shape', `tensor ${q(name)} shape must be an array of dimensions, but it is ${describeValue(shape)}`);
  }
  for (const d of shape as unknown[]) {
    if (typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0) {
      return fail('bad_shape', `tensor ${q(name)} shape has an invalid dimension ${describeValue(d)}; dimensions are non-negative integers`);
    }
  }
  if (
    !Array.isArray(offsets) ||
    offsets.length !== 2 ||
    !offsets.every((o: unknown) => typeof o === 'number' && Number.isSafeInteger(o) && o >= 0)
  ) {
    return fail('bad_offsets', `tensor ${q(name)} data_offsets must be two non-negative integers [begin, end]`);
  }
  const [begin, end] = offsets as [number, number];
  if (begin > end) {
    return fail('bad_offsets', `tensor ${q(name)} data_offsets [${begin}, ${end}) end before they begin`);
  }

  // Element count and size with a checked multiply at every step (left to right, like the reference reader).
  const dims = shape as number[];
  let elements = 1n;
  for (const d of dims) {
    elements *= BigInt(d);
    if (elements > MAX_SAFE) {
      return fail('shape_overflow', `tensor ${q(name)} shape ${shapeStr(dims)} is impossibly large (over 2^53 elements)`);
    }
  }
  const totalBits = elements * BigInt(bits);
  if (totalBits / 8n > MAX_SAFE) {
    return fail('shape_overflow', `tensor ${q(name)} shape ${shapeStr(dims)} of ${dtype} is impossibly large (over 2^53 bytes)`);
  }
  if (totalBits % 8n !== 0n) {
    return fail('misaligned_sub_byte', `tensor ${q(name)} has ${elements} ${dtype} elements (${bits} bits each), which do not fill whole bytes`);
  }
  const bytes = Number(totalBits / 8n);
  if (end - begin !== bytes) {
    return fail(
      'tensor_size_mismatch',
      `tensor ${q(name)} shape ${shapeStr(dims)} of ${dtype} needs ${bytes} bytes but data_offsets [${begin}, ${end}) span ${end - begin}`,
    );
  }
  return { name, dtype, begin, end };
}

/** The data ranges, sorted, must cover [0, dataSize) with no gap and no overlap. */
function checkTiling(tensors: TensorEntry[], dataSize: number): ValidationFailure | undefined {
  const sorted = [...tensors].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let pos = 0;
  let prev: TensorEntry | undefined;
  for (const t of sorted) {
    if (t.begin < pos && prev) {
      return fail(
        'offsets_overlap',
        `tensor ${q(t.name)} data_offsets [${t.begin}, ${t.end}) overlap tensor ${q(prev.name)} [${prev.begin}, ${prev.end})`,
      );
    }
    if (t.begin > pos) {
      const gap = t.begin - pos;
      return fail(
        'offsets_hole',
        prev
          ? `${gap} unused bytes between tensor ${q(prev.name)} (ends at ${prev.end}) and tensor ${q(t.name)} (begins at ${t.begin})`
          : `${gap} unused bytes at the start of the data section, before tensor ${q(t.name)} (begins at ${t.begin}, expected 0)`,
      );
    }
    pos = t.end;
    prev = t;
  }
  if (pos > dataSize) {
    return fail(
      'data_truncated',
      `header declares ${bytesExact(pos)} of tensor data but the file has ${bytesExact(dataSize)} ` +
        'after the header; the file is truncated (incomplete upload?)',
    );
  }
  if (pos < dataSize) {
    return fail(
      'trailing_bytes',
      `the file has ${dataSize - pos} unexpected bytes after the last tensor (header declares ${pos} bytes of tensor data, ` +
        `the file has ${dataSize})`,
    );
  }
  return undefined;
}

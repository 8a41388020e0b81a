// Content validation of an uploaded LoRA file: it must be a well-formed safetensors file, whatever its name says.
// Reads only the 8-byte length prefix and the JSON header (8 + N bytes), never the tensor data, so a 2 GB upload
// costs two small ranged reads. Format: u64 LE header length N, N bytes of UTF-8 JSON header, then the data section,
// which the header's data_offsets must tile exactly (the reference implementation's rules, huggingface/safetensors).
import { formatBytes } from '../../../contract/bytes.js';
import { dtypeBits, HeaderParseError, parseHeader, q, type HeaderLimits, type RawTensor } from './header-parse.js';
import type { RangeSource } from './range-source.js';

/** The reference loader's MAX_HEADER_SIZE (decimal 100 MB). */
export const DEFAULT_MAX_HEADER_BYTES = 100_000_000;
/** Product limits (the reference has none): far above any real LoRA, low enough that a header cannot hold a parser. */
export const DEFAULT_MAX_TENSORS = 100_000;
export const DEFAULT_MAX_METADATA_ENTRIES = 10_000;

export { DTYPE_BITS, dtypeBits } from './header-parse.js';

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
  'header_too_deep',
  'header_not_object',
  'header_too_many_entries',
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
  /** Reject headers longer than this. Default 100 000 000 bytes, the reference's limit. */
  maxHeaderBytes?: number;
  /** Reject headers with more tensor entries than this. Default 100 000. */
  maxTensors?: number;
  /** Reject a __metadata__ with more entries than this. Default 10 000. */
  maxMetadataEntries?: number;
}

function fail(code: ValidationCode, reason: string): ValidationFailure {
  return { ok: false, code, reason };
}

/** "12 KiB (12288 bytes)", or just "12 bytes" when small. */
function bytesExact(n: bigint): string {
  return n < 1024n ? formatBytes(n) : `${formatBytes(n)} (${n} bytes)`;
}

function shapeStr(dims: bigint[]): string {
  return `[${dims.slice(0, 8).join(', ')}${dims.length > 8 ? `, ... (${dims.length} dims)` : ''}]`;
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

const U64_MAX = (1n << 64n) - 1n;

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
  const limits: HeaderLimits = {
    maxTensors: opts.maxTensors ?? DEFAULT_MAX_TENSORS,
    maxMetadataEntries: opts.maxMetadataEntries ?? DEFAULT_MAX_METADATA_ENTRIES,
  };
  const result = checkHeader(header, size - 8 - n, limits);
  // A valid header wins: the length bytes of a real file can coincide with a magic number (0x280 looks like a pickle).
  return result.ok ? result : (wrongFormat ?? result);
}

async function readExact(src: RangeSource, offset: number, length: number): Promise<Buffer> {
  const buf = await src.read(offset, length);
  if (buf.length !== length) throw new Error(`RangeSource returned ${buf.length} bytes for a ${length}-byte read at ${offset}`);
  return buf;
}

function checkHeader(header: Buffer, dataSize: number, limits: HeaderLimits): ValidationResult {
  let parsed;
  try {
    parsed = parseHeader(header, limits);
  } catch (err) {
    if (err instanceof HeaderParseError) return fail(err.code, err.message);
    throw err;
  }
  const tensors = [...parsed.tensors.values()];
  if (tensors.length === 0) {
    return fail('no_tensors', 'the file contains no tensors, so it cannot be a LoRA');
  }
  for (const t of tensors) {
    const bad = checkTensor(t);
    if (bad) return bad;
  }
  const tiled = checkTiling(tensors, BigInt(dataSize));
  if (tiled) return tiled;

  return {
    ok: true,
    headerBytes: header.length,
    dataBytes: dataSize,
    tensorCount: tensors.length,
    dtypes: [...new Set(tensors.map((t) => t.dtype))].sort(),
    // fromEntries defines own properties, so a "__proto__" key stays data and cannot touch a prototype.
    metadata: Object.fromEntries(parsed.metadata ?? []),
  };
}

/** Size from shape and dtype with the reference's checked u64 arithmetic (left to right, overflow fails at once). */
function checkTensor(t: RawTensor): ValidationFailure | undefined {
  const { name, dtype, shape: dims, begin, end } = t;
  if (begin > end) {
    return fail('bad_offsets', `tensor ${q(name)} data_offsets [${begin}, ${end}) end before they begin`);
  }
  const bits = BigInt(dtypeBits(dtype)!);
  let elements = 1n;
  for (const d of dims) {
    elements *= d;
    if (elements > U64_MAX) {
      return fail('shape_overflow', `tensor ${q(name)} shape ${shapeStr(dims)} is impossibly large (over 2^64 elements)`);
    }
  }
  const totalBits = elements * bits;
  if (totalBits > U64_MAX) {
    return fail('shape_overflow', `tensor ${q(name)} shape ${shapeStr(dims)} of ${dtype} is impossibly large (over 2^64 bits)`);
  }
  if (totalBits % 8n !== 0n) {
    return fail('misaligned_sub_byte', `tensor ${q(name)} has ${elements} ${dtype} elements (${bits} bits each), which do not fill whole bytes`);
  }
  const bytes = totalBits / 8n;
  if (end - begin !== bytes) {
    return fail(
      'tensor_size_mismatch',
      `tensor ${q(name)} shape ${shapeStr(dims)} of ${dtype} needs ${bytes} bytes but data_offsets [${begin}, ${end}) span ${end - begin}`,
    );
  }
  return undefined;
}

/** The data ranges, sorted by (begin, end) like the reference, must cover [0, dataSize) with no gap and no overlap. */
function checkTiling(tensors: RawTensor[], dataSize: bigint): ValidationFailure | undefined {
  const sorted = [...tensors].sort((a, b) => (a.begin !== b.begin ? (a.begin < b.begin ? -1 : 1) : a.end < b.end ? -1 : a.end > b.end ? 1 : 0));
  let pos = 0n;
  let prev: RawTensor | undefined;
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

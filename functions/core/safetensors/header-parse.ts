// One pass over the JSON header bytes that accepts exactly what the reference loader (huggingface/safetensors,
// serde_json) accepts, without building a tree: values nobody reads (extra tensor fields) are checked and skipped,
// never materialised, so a hostile 16 MiB header costs one linear scan and no extra memory.
// The reference deserializes `struct HashMetadata { #[serde(rename = "__metadata__")] metadata:
// Option<HashMap<String, String>>, #[serde(flatten)] tensors: HashMap<String, TensorInfo> }` with serde_json:
//   - serde_json grammar: nesting deeper than 127 fails (recursion limit 128), \u escapes must not leave a lone
//     surrogate, a number whose value overflows f64 fails;
//   - `__metadata__` is a struct field: a second one fails (duplicate_field); null means none; values must be strings
//     (duplicate keys inside it: last wins, like a HashMap);
//   - a tensor name is a HashMap key: a repeated name keeps the last entry, but every entry must deserialize;
//   - TensorInfo is a derived struct read from buffered content: a map (dtype, shape, data_offsets once each, other
//     fields ignored) or a sequence of exactly 3; dtype is a unit enum variant, "F16" or {"F16": null};
//     shape and data_offsets are usize: integer literals 0..2^64-1 only (so 1.0, 1e0, -0 fail).
import { isUtf8 } from 'node:buffer';
import { HeaderParseError } from './header-errors.js';
import { Ch, JsonScanner } from './json-scan.js';

export { HeaderParseError, type HeaderParseCode } from './header-errors.js';

export interface RawTensor {
  name: string;
  dtype: string;
  shape: bigint[];
  begin: bigint;
  end: bigint;
}

export interface ParsedHeader {
  /** null when absent or `"__metadata__": null`. */
  metadata: Map<string, string> | null;
  /** By name; a repeated name keeps its last entry, as the reference's HashMap does. */
  tensors: Map<string, RawTensor>;
}

export interface HeaderLimits {
  /** Product limits beyond the reference, so one header cannot hold the parser for long. */
  maxTensors: number;
  maxMetadataEntries: number;
}

/** Tensor element width in bits; the reference's Dtype enum. */
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
  F8_E4M3FNUZ: 8,
  F8_E5M2FNUZ: 8,
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

/** A tensor name or value from an untrusted header, quoted and cut short so a reason stays a readable sentence. */
export function q(s: string): string {
  return JSON.stringify(s.length > 100 ? `${s.slice(0, 97)}...` : s);
}

export function parseHeader(bytes: Buffer, limits: HeaderLimits): ParsedHeader {
  if (!isUtf8(bytes)) throw new HeaderParseError('header_not_utf8', `the JSON header (${bytes.length} bytes) is not valid UTF-8 text; the file is corrupt`);
  return new HeaderScanner(bytes, limits).header();
}

class HeaderScanner extends JsonScanner {
  constructor(
    b: Buffer,
    private readonly limits: HeaderLimits,
  ) {
    super(b);
  }

  header(): ParsedHeader {
    this.ws();
    if (this.b[this.pos] !== Ch.LBrace) {
      this.skipValue(0);
      this.end();
      throw new HeaderParseError('header_not_object', 'the header must be a JSON object mapping tensor names to tensors');
    }
    this.pos++;
    let metadata: Map<string, string> | null | undefined;
    const tensors = new Map<string, RawTensor>();
    let count = 0;
    for (let first = true; ; first = false) {
      this.ws();
      if (this.b[this.pos] === Ch.RBrace && first) {
        this.pos++;
        break;
      }
      const name = this.key();
      if (name === '__metadata__') {
        if (metadata !== undefined) throw new HeaderParseError('bad_metadata', '__metadata__ appears twice in the header');
        metadata = this.metadata();
      } else {
        if (++count > this.limits.maxTensors) {
          throw new HeaderParseError('header_too_many_entries', `the header has more than ${this.limits.maxTensors} tensors`);
        }
        tensors.set(name, this.tensor(name));
      }
      this.ws();
      const c = this.b[this.pos++];
      if (c === Ch.RBrace) break;
      if (c !== Ch.Comma) this.bad('expected , or } after a header entry');
    }
    this.end();
    return { metadata: metadata ?? null, tensors };
  }

  private metadata(): Map<string, string> | null {
    const c = this.b[this.pos];
    if (c !== Ch.LBrace) {
      if (c === 0x6e && this.literal() === 'null') return null;
      throw new HeaderParseError('bad_metadata', '__metadata__ must be an object of string values');
    }
    this.enter(2);
    this.pos++;
    const m = new Map<string, string>();
    this.ws();
    if (this.b[this.pos] === Ch.RBrace) {
      this.pos++;
      return m;
    }
    for (;;) {
      const k = this.key();
      if (this.b[this.pos] !== Ch.Quote) {
        throw new HeaderParseError('bad_metadata', `__metadata__ value for ${q(k)} must be a string`);
      }
      m.set(k, this.string(true)!);
      if (m.size > this.limits.maxMetadataEntries) {
        throw new HeaderParseError('header_too_many_entries', `__metadata__ has more than ${this.limits.maxMetadataEntries} entries`);
      }
      this.ws();
      const d = this.b[this.pos++];
      if (d === Ch.RBrace) return m;
      if (d !== Ch.Comma) this.bad('expected , or } in __metadata__');
      this.ws();
    }
  }

  /** A TensorInfo: a map with dtype/shape/data_offsets once each, or a sequence of exactly those three. */
  private tensor(name: string): RawTensor {
    const c = this.b[this.pos];
    if (c !== Ch.LBrace && c !== Ch.LBracket) {
      this.skipValue(1);
      throw new HeaderParseError('bad_tensor_entry', `tensor ${q(name)} must be an object with dtype, shape and data_offsets`);
    }
    this.enter(2);
    this.pos++;
    this.ws();
    let dtype: string | undefined;
    let shape: bigint[] | undefined;
    let offsets: bigint[] | undefined;
    if (c === Ch.LBracket) {
      for (let i = 0; i < 3; i++) {
        if (i > 0) this.comma(Ch.RBracket, name);
        if (i === 0) dtype = this.dtype(name);
        else if (i === 1) shape = this.usizeArray(name, 'shape');
        else offsets = this.usizeArray(name, 'data_offsets');
        this.ws();
      }
      if (this.b[this.pos++] !== Ch.RBracket) {
        throw new HeaderParseError('bad_tensor_entry', `tensor ${q(name)} written as a list must have exactly 3 items [dtype, shape, data_offsets]`);
      }
    } else if (this.b[this.pos] === Ch.RBrace) {
      this.pos++;
    } else {
      for (;;) {
        const k = this.key();
        const dup = (): never => {
          throw new HeaderParseError('bad_tensor_entry', `tensor ${q(name)} has ${k} twice`);
        };
        if (k === 'dtype') dtype = dtype === undefined ? this.dtype(name) : dup();
        else if (k === 'shape') shape = shape === undefined ? this.usizeArray(name, 'shape') : dup();
        else if (k === 'data_offsets') offsets = offsets === undefined ? this.usizeArray(name, 'data_offsets') : dup();
        else this.skipValue(2);
        this.ws();
        const d = this.b[this.pos++];
        if (d === Ch.RBrace) break;
        if (d !== Ch.Comma) this.bad('expected , or } in a tensor entry');
        this.ws();
      }
    }
    if (dtype === undefined) throw new HeaderParseError('bad_tensor_entry', `tensor ${q(name)} has no dtype`);
    if (shape === undefined) throw new HeaderParseError('bad_shape', `tensor ${q(name)} has no shape`);
    if (offsets === undefined) throw new HeaderParseError('bad_offsets', `tensor ${q(name)} has no data_offsets`);
    if (offsets.length !== 2) throw new HeaderParseError('bad_offsets', `tensor ${q(name)} data_offsets must be two non-negative integers [begin, end]`);
    return { name, dtype, shape, begin: offsets[0]!, end: offsets[1]! };
  }

  private comma(close: number, name: string): void {
    const d = this.b[this.pos++];
    if (d === Ch.Comma) {
      this.ws();
      return;
    }
    if (d === close) throw new HeaderParseError('bad_tensor_entry', `tensor ${q(name)} written as a list must have exactly 3 items [dtype, shape, data_offsets]`);
    this.bad('expected , in a list');
  }

  /** "F16", or the enum's map form {"F16": null}. */
  private dtype(name: string): string {
    const c = this.b[this.pos];
    let dtype: string;
    if (c === Ch.Quote) {
      dtype = this.string(true)!;
    } else if (c === Ch.LBrace) {
      this.enter(3);
      this.pos++;
      this.ws();
      if (this.b[this.pos] === Ch.RBrace) throw new HeaderParseError('bad_tensor_entry', `tensor ${q(name)} dtype is an empty object`);
      dtype = this.key();
      if (dtypeBits(dtype) === undefined) throw new HeaderParseError('unknown_dtype', `tensor ${q(name)} has unknown dtype ${q(dtype)}`);
      if (this.b[this.pos] !== 0x6e || this.literal() !== 'null') {
        throw new HeaderParseError('bad_tensor_entry', `tensor ${q(name)} dtype written as an object must be {${q(dtype)}: null}`);
      }
      this.ws();
      if (this.b[this.pos++] !== Ch.RBrace) throw new HeaderParseError('bad_tensor_entry', `tensor ${q(name)} dtype object must have a single key`);
    } else {
      this.skipValue(2);
      throw new HeaderParseError('bad_tensor_entry', `tensor ${q(name)} has no dtype string`);
    }
    if (dtypeBits(dtype) === undefined) {
      throw new HeaderParseError('unknown_dtype', `tensor ${q(name)} has unknown dtype ${q(dtype)}; known: ${Object.keys(DTYPE_BITS).join(', ')}`);
    }
    return dtype;
  }

  /** An array of integer literals 0..2^64-1 (serde's usize on a 64-bit machine). */
  private usizeArray(name: string, field: 'shape' | 'data_offsets'): bigint[] {
    const code = field === 'shape' ? 'bad_shape' : 'bad_offsets';
    const what = field === 'shape' ? 'shape must be an array of dimensions' : 'data_offsets must be two non-negative integers [begin, end]';
    if (this.b[this.pos] !== Ch.LBracket) {
      this.skipValue(2);
      throw new HeaderParseError(code, `tensor ${q(name)} ${what}`);
    }
    this.enter(3);
    this.pos++;
    this.ws();
    const out: bigint[] = [];
    if (this.b[this.pos] === Ch.RBracket) {
      this.pos++;
      return out;
    }
    for (;;) {
      const c = this.b[this.pos];
      const isNumber = c === Ch.Minus || (c !== undefined && c >= 0x30 && c <= 0x39);
      if (!isNumber) {
        this.skipValue(3);
        throw new HeaderParseError(code, `tensor ${q(name)} ${what}; found a non-number`);
      }
      if (this.number() !== 'u64') {
        throw new HeaderParseError(code, `tensor ${q(name)} ${what}; each is a whole number written without a fraction, exponent or sign`);
      }
      out.push(this.lastNumber);
      this.ws();
      const d = this.b[this.pos++];
      if (d === Ch.RBracket) return out;
      if (d !== Ch.Comma) this.bad('expected , or ] in a list');
      this.ws();
    }
  }
}

// An independent model of the reference loader (huggingface/safetensors `SafeTensors::read_metadata`, serde_json 1.x,
// serde derive), written for tests only and sharing no code with the production validator. It works the way serde
// does: first parse the whole JSON header into a tagged "Content" tree (serde_json's grammar, recursion limit 128,
// UTF-8 strings, number classes u64 / i64 / f64), then deserialize `HashMetadata` from that tree, then run
// `Metadata::validate` and the final length check. Product rules on top of the reference: at least one tensor,
// a header-size limit, and entry-count limits, passed in explicitly.

type Content =
  | { t: 'unit' }
  | { t: 'bool' }
  | { t: 'u64'; v: bigint }
  | { t: 'i64' }
  | { t: 'f64' }
  | { t: 'str'; v: string }
  | { t: 'seq'; v: Content[] }
  | { t: 'map'; v: Array<[string, Content]> };

class Reject extends Error {}

const DTYPE_BITS: Record<string, bigint> = {
  BOOL: 8n, F4: 4n, F6_E2M3: 6n, F6_E3M2: 6n, U8: 8n, I8: 8n, F8_E5M2: 8n, F8_E4M3: 8n, F8_E8M0: 8n,
  F8_E4M3FNUZ: 8n, F8_E5M2FNUZ: 8n, I16: 16n, U16: 16n, F16: 16n, BF16: 16n, I32: 32n, U32: 32n, F32: 32n,
  C64: 64n, F64: 64n, I64: 64n, U64: 64n,
};
const USIZE_MAX = 2n ** 64n - 1n;

/** serde_json::from_str into Content, over a JS string (UTF-16 code units; the text is already valid Unicode). */
class ContentParser {
  private i = 0;
  private remainingDepth = 128;
  constructor(private readonly s: string) {}

  parseAll(): Content {
    const v = this.value();
    this.skipWs();
    if (this.i !== this.s.length) throw new Reject('trailing characters');
    return v;
  }

  private skipWs(): void {
    while (this.i < this.s.length && ' \t\n\r'.includes(this.s[this.i]!)) this.i++;
  }

  private value(): Content {
    this.skipWs();
    const c = this.s[this.i];
    if (c === undefined) throw new Reject('EOF while parsing a value');
    if (c === '{' || c === '[') {
      this.remainingDepth -= 1;
      if (this.remainingDepth === 0) throw new Reject('recursion limit exceeded');
      const out = c === '{' ? this.object() : this.array();
      this.remainingDepth += 1;
      return out;
    }
    if (c === '"') return { t: 'str', v: this.str() };
    if (c === '-' || (c >= '0' && c <= '9')) return this.num();
    for (const [word, content] of [['null', { t: 'unit' }], ['true', { t: 'bool' }], ['false', { t: 'bool' }]] as const) {
      if (this.s.startsWith(word, this.i)) {
        this.i += word.length;
        return content;
      }
    }
    throw new Reject('expected value');
  }

  private array(): Content {
    this.i++;
    const v: Content[] = [];
    this.skipWs();
    if (this.s[this.i] === ']') {
      this.i++;
      return { t: 'seq', v };
    }
    for (;;) {
      v.push(this.value());
      this.skipWs();
      const c = this.s[this.i++];
      if (c === ']') return { t: 'seq', v };
      if (c !== ',') throw new Reject('expected , or ]');
    }
  }

  private object(): Content {
    this.i++;
    const v: Array<[string, Content]> = [];
    this.skipWs();
    if (this.s[this.i] === '}') {
      this.i++;
      return { t: 'map', v };
    }
    for (;;) {
      this.skipWs();
      if (this.s[this.i] !== '"') throw new Reject('key must be a string');
      const k = this.str();
      this.skipWs();
      if (this.s[this.i++] !== ':') throw new Reject('expected :');
      v.push([k, this.value()]);
      this.skipWs();
      const c = this.s[this.i++];
      if (c === '}') return { t: 'map', v };
      if (c !== ',') throw new Reject('expected , or }');
    }
  }

  private hex(): number {
    const h = this.s.slice(this.i, this.i + 4);
    if (!/^[0-9a-fA-F]{4}$/.test(h)) throw new Reject('bad hex escape');
    this.i += 4;
    return parseInt(h, 16);
  }

  private str(): string {
    this.i++;
    let out = '';
    for (;;) {
      const c = this.s[this.i++];
      if (c === undefined) throw new Reject('EOF in string');
      if (c === '"') return out;
      if (c.charCodeAt(0) < 0x20) throw new Reject('control character in string');
      if (c !== '\\') {
        out += c;
        continue;
      }
      const e = this.s[this.i++];
      const simple: Record<string, string> = { '"': '"', '\\': '\\', '/': '/', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t' };
      if (e !== undefined && e in simple) {
        out += simple[e];
        continue;
      }
      if (e !== 'u') throw new Reject('invalid escape');
      const n = this.hex();
      if (n >= 0xdc00 && n <= 0xdfff) throw new Reject('lone trailing surrogate');
      if (n < 0xd800 || n > 0xdbff) {
        out += String.fromCharCode(n);
        continue;
      }
      if (this.s[this.i] !== '\\' || this.s[this.i + 1] !== 'u') throw new Reject('unexpected end of hex escape');
      this.i += 2;
      const n2 = this.hex();
      if (n2 < 0xdc00 || n2 > 0xdfff) throw new Reject('lone leading surrogate');
      out += String.fromCharCode(n, n2);
    }
  }

  private num(): Content {
    const m = /^(-?)(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/.exec(this.s.slice(this.i, this.i + 400_000));
    if (!m) throw new Reject('invalid number');
    // "01" and "-" fail: after a leading 0 no digit may follow.
    if (m[2] === '0' && /[0-9]/.test(this.s[this.i + m[0].length] ?? '')) throw new Reject('leading zero');
    this.i += m[0].length;
    const [, sign, int, frac, exp] = m;
    if (frac === undefined && exp === undefined) {
      const mag = BigInt(int!);
      if (sign === '') {
        if (mag <= USIZE_MAX) return { t: 'u64', v: mag };
      } else if (mag !== 0n && mag <= 2n ** 63n) {
        return { t: 'i64' };
      }
    }
    if (!Number.isFinite(Number(m[0]))) throw new Reject('number out of range');
    return { t: 'f64' };
  }
}

interface TensorInfo {
  dtype: string;
  shape: bigint[];
  offsets: [bigint, bigint];
}

function usize(c: Content): bigint {
  if (c.t !== 'u64') throw new Reject('invalid type: expected usize');
  return c.v;
}

function usizeSeq(c: Content): bigint[] {
  if (c.t !== 'seq') throw new Reject('invalid type: expected a sequence');
  return c.v.map(usize);
}

/** `enum Dtype` from Content: a string variant, or a one-entry map whose value is unit. */
function dtypeFrom(c: Content): string {
  let name: string;
  if (c.t === 'str') name = c.v;
  else if (c.t === 'map') {
    if (c.v.length !== 1) throw new Reject('map with a single key');
    const [k, v] = c.v[0]!;
    if (!(k in DTYPE_BITS)) throw new Reject('unknown variant');
    if (v.t !== 'unit') throw new Reject('unit variant with a value');
    name = k;
  } else throw new Reject('string or map');
  if (!Object.hasOwn(DTYPE_BITS, name)) throw new Reject('unknown variant');
  return name;
}

/** `#[derive(Deserialize)] struct TensorInfo` from Content: visit_map or visit_seq. */
function tensorInfoFrom(c: Content): TensorInfo {
  let dtype: Content | undefined;
  let shape: Content | undefined;
  let offsets: Content | undefined;
  if (c.t === 'seq') {
    if (c.v.length !== 3) throw new Reject('invalid length');
    [dtype, shape, offsets] = c.v;
  } else if (c.t === 'map') {
    for (const [k, v] of c.v) {
      if (k === 'dtype') {
        if (dtype) throw new Reject('duplicate field');
        dtype = v;
      } else if (k === 'shape') {
        if (shape) throw new Reject('duplicate field');
        shape = v;
      } else if (k === 'data_offsets') {
        if (offsets) throw new Reject('duplicate field');
        offsets = v;
      }
    }
  } else throw new Reject('invalid type for TensorInfo');
  // The derived visitor deserializes each field as it meets it; the order of failure does not matter here.
  if (!dtype || !shape || !offsets) throw new Reject('missing field');
  const d = dtypeFrom(dtype);
  const s = usizeSeq(shape);
  const o = usizeSeq(offsets);
  if (o.length !== 2) throw new Reject('invalid length for (usize, usize)');
  return { dtype: d, shape: s, offsets: [o[0]!, o[1]!] };
}

export interface OracleLimits {
  maxHeaderBytes: number;
  maxTensors: number;
  maxMetadataEntries: number;
}

export type OracleVerdict = { ok: true; tensorCount: number; dataBytes: number; dtypes: string[]; metadata: Record<string, string> } | { ok: false; why: string };

export function oracleValidate(file: Buffer, limits: OracleLimits): OracleVerdict {
  try {
    return { ok: true, ...readMetadata(file, limits) };
  } catch (err) {
    if (err instanceof Reject) return { ok: false, why: err.message };
    throw err;
  }
}

function readMetadata(buffer: Buffer, limits: OracleLimits) {
  if (buffer.length < 8) throw new Reject('HeaderTooSmall');
  const n = buffer.readBigUInt64LE(0);
  if (n > 100_000_000n || n > BigInt(limits.maxHeaderBytes)) throw new Reject('HeaderTooLarge');
  if (8n + n > BigInt(buffer.length)) throw new Reject('InvalidHeaderLength');
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(buffer.subarray(8, 8 + Number(n)));
  } catch {
    throw new Reject('InvalidHeader (utf8)');
  }
  const root = new ContentParser(text).parseAll();
  // HashMetadata: #[serde(flatten)] makes serde call deserialize_map, so only a JSON object will do.
  if (root.t !== 'map') throw new Reject('invalid type: expected a map');
  let metadata: Map<string, string> | null | undefined;
  const tensors = new Map<string, TensorInfo>();
  let entries = 0;
  for (const [k, v] of root.v) {
    if (k === '__metadata__') {
      if (metadata !== undefined) throw new Reject('duplicate field `__metadata__`');
      if (v.t === 'unit') metadata = null;
      else if (v.t === 'map') {
        metadata = new Map();
        for (const [mk, mv] of v.v) {
          if (mv.t !== 'str') throw new Reject('metadata value must be a string');
          metadata.set(mk, mv.v);
        }
        if (metadata.size > limits.maxMetadataEntries) throw new Reject('product limit: metadata entries');
      } else throw new Reject('metadata must be a map or null');
    } else {
      entries++;
      tensors.set(k, tensorInfoFrom(v));
    }
  }
  if (entries > limits.maxTensors) throw new Reject('product limit: tensors');
  // Metadata::validate over tensors sorted by data_offsets.
  const sorted = [...tensors.values()].sort((a, b) =>
    a.offsets[0] !== b.offsets[0] ? (a.offsets[0] < b.offsets[0] ? -1 : 1) : a.offsets[1] === b.offsets[1] ? 0 : a.offsets[1] < b.offsets[1] ? -1 : 1,
  );
  let start = 0n;
  for (const info of sorted) {
    const [s, e] = info.offsets;
    if (s !== start || e < s) throw new Reject('InvalidOffset');
    start = e;
    let nelements = 1n;
    for (const d of info.shape) {
      nelements *= d;
      if (nelements > USIZE_MAX) throw new Reject('ValidationOverflow');
    }
    const nbits = nelements * DTYPE_BITS[info.dtype]!;
    if (nbits > USIZE_MAX) throw new Reject('ValidationOverflow');
    if (nbits % 8n !== 0n) throw new Reject('MisalignedSlice');
    if (e - s !== nbits / 8n) throw new Reject('TensorInvalidInfo');
  }
  if (start + 8n + n !== BigInt(buffer.length)) throw new Reject('MetadataIncompleteBuffer');
  if (tensors.size === 0) throw new Reject('product rule: no tensors');
  return {
    tensorCount: tensors.size,
    dataBytes: buffer.length - 8 - Number(n),
    dtypes: [...new Set([...tensors.values()].map((t) => t.dtype))].sort(),
    metadata: Object.fromEntries(metadata ?? []),
  };
}

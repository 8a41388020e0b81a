// Seeded differential fuzzing of the upload validator against the independent reference model in
// safetensors-oracle.ts. Inputs start as valid files written in every form the reference accepts (tensor entries as
// maps or 3-item lists, dtype as "F16" or {"F16": null}, metadata absent/null/object, escapes, duplicate names,
// extra fields, whitespace) and are then mutated at the token, text and byte level, with the length prefix usually
// recomputed so the mutation reaches the JSON parser. Used by the test (small count) and bench/safetensors-fuzz.ts.
import { validateSafetensors } from '../functions/core/safetensors/validate.js';
import { oracleValidate, type OracleLimits, type OracleVerdict } from './safetensors-oracle.js';

export interface FuzzStats {
  seed: number;
  tried: number;
  accepted: number;
  rejected: number;
  disagreements: number;
  firstDisagreements: Array<{ header: string; validator: string; oracle: string }>;
  slowestMs: number;
  slowestInput: string;
  validatorMs: number;
  /** Oracle's rejection reasons, by count. */
  rejectReasons: Record<string, number>;
}

type Validate = typeof validateSafetensors;

export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const DTYPES: Array<[string, number]> = [
  ['BOOL', 8], ['F4', 4], ['F6_E2M3', 6], ['U8', 8], ['F8_E4M3', 8], ['F8_E5M2FNUZ', 8], ['F16', 16], ['BF16', 16], ['F32', 32], ['I64', 64], ['C64', 64],
];
const NAMES = ['a', 'lora_up.weight', 'lora_down.weight', 'alpha', '\\u00e9t\\u00e9', '\\ud83d\\ude00', 'x\\ny', '__proto__', 'dtype', 'shape', '\\u005f_metadata__'];
const NUMBER_SWAPS = ['1.0', '1e0', '-0', '0', '01', '-1', '1E1', '0.0', '2', '18446744073709551615', '18446744073709551616', '1e400', '-1e400', '9007199254740993', '00', '1.', '.5', '+1'];
const TOKENS = [
  ',', '"', '{', '}', '[', ']', ':', 'null', 'true', ' ', '\t', '\n', '\\', '\\ud800', '\\udc00', '\\ud800\\u0041', '\\ud800x', '\\ud83d\\ude00', '\\u0000', '\\x',
  '"__metadata__":{},', '"__metadata__":null,', '"__metadata__":{"k":"v","k":"w"},', '"__metadata__":{"k":1},', '"dtype":"U8",', '"shape":[],', '"data_offsets":[0,0],',
  '{"F16":null}', '{"F16":{}}', '"F8_E4M3FNUZ"', '"f16"', '["U8",[0],[0,0]]', '["U8",[0]]', '1e400', '-0', '1.0',
];

function pick<T>(r: () => number, xs: readonly T[]): T {
  return xs[Math.floor(r() * xs.length)]!;
}

function nested(k: number): string {
  return '['.repeat(k) + ']'.repeat(k);
}

function ws(r: () => number): string {
  return r() < 0.8 ? '' : pick(r, [' ', '\n', '\t', '\r\n  ']);
}

/** A valid header (as text) and its data size. */
function validHeader(r: () => number): { text: string; dataBytes: number } {
  const entries: string[] = [];
  let offset = 0;
  const count = 1 + Math.floor(r() * 4);
  for (let i = 0; i < count; i++) {
    const [dtype, bits] = pick(r, DTYPES);
    const dims = Array.from({ length: Math.floor(r() * 3) }, () => Math.floor(r() * 5));
    let elements = dims.reduce((x, y) => x * y, 1);
    if ((elements * bits) % 8 !== 0) {
      dims.push(2);
      elements *= 2;
    }
    const bytes = (elements * bits) / 8;
    const dt = r() < 0.1 ? `{"${dtype}":${ws(r)}null}` : `"${dtype}"`;
    const shape = `[${dims.join(`,${ws(r)}`)}]`;
    const offs = `[${offset},${ws(r)}${offset + bytes}]`;
    offset += bytes;
    let body: string;
    if (r() < 0.1) body = `[${dt},${shape},${offs}]`;
    else {
      const fields = [`"dtype":${ws(r)}${dt}`, `"shape":${shape}`, `"data_offsets":${offs}`];
      if (r() < 0.2) fields.push(`"extra":${pick(r, ['1', '"s"', 'null', '{}', '[1.5,-2,{"a":[]}]', nested(120 + Math.floor(r() * 8))])}`);
      if (r() < 0.5) fields.reverse();
      body = `{${fields.join(`,${ws(r)}`)}}`;
    }
    const name = r() < 0.8 ? `${pick(r, NAMES)}${i}` : pick(r, NAMES);
    entries.push(`"${name}":${ws(r)}${body}`);
  }
  const m = r();
  if (m < 0.3) entries.unshift(`"__metadata__":{"format":"pt","ss\\u0041":"v\\u00e9"}`);
  else if (m < 0.35) entries.push('"__metadata__":null');
  else if (m < 0.4) entries.push('"__metadata__":{}');
  return { text: `${ws(r)}{${entries.join(`,${ws(r)}`)}}${r() < 0.2 ? '   ' : ''}`, dataBytes: offset };
}

function mutateText(r: () => number, s: string): string {
  const at = Math.floor(r() * (s.length + 1));
  switch (Math.floor(r() * 7)) {
    case 0: {
      const nums = [...s.matchAll(/-?[0-9][0-9.eE+-]*/g)];
      if (nums.length === 0) return s;
      const n = pick(r, nums);
      return s.slice(0, n.index) + pick(r, NUMBER_SWAPS) + s.slice(n.index! + n[0].length);
    }
    case 1:
      return s.slice(0, at) + pick(r, TOKENS) + s.slice(at);
    case 2: {
      const len = 1 + Math.floor(r() * 6);
      return s.slice(0, at) + s.slice(at + len);
    }
    case 3: {
      const len = 1 + Math.floor(r() * 30);
      return s.slice(0, at) + s.slice(at, at + len) + s.slice(at);
    }
    case 4:
      return s.slice(0, at) + nested(122 + Math.floor(r() * 8)) + s.slice(at);
    case 5: {
      const dt = [...s.matchAll(/"(BOOL|F4|F6_E2M3|U8|F8_E4M3|F8_E5M2FNUZ|F16|BF16|F32|I64|C64)"/g)];
      if (dt.length === 0) return s;
      const d = pick(r, dt);
      return s.slice(0, d.index) + pick(r, ['"U8"', '"F64"', '"F6_E3M2"', '"Q4"', '"u8"', '{"U8":null}', '{"U8":0}', '{}', '["U8"]', '{"U8":null,"I8":null}']) + s.slice(d.index! + d[0].length);
    }
    default: {
      const keys = ['"dtype"', '"shape"', '"data_offsets"', '"__metadata__"'];
      return s.slice(0, at) + `${pick(r, keys)}:${pick(r, ['"U8"', '[1]', '[0,1]', 'null', '{}', '{"k":"v"}'])},` + s.slice(at);
    }
  }
}

function mutateBytes(r: () => number, b: Buffer): Buffer {
  if (b.length === 0) return b;
  const at = Math.floor(r() * b.length);
  const out = Buffer.from(b);
  switch (Math.floor(r() * 3)) {
    case 0:
      out[at] = Math.floor(r() * 256);
      return out;
    case 1:
      return Buffer.concat([b.subarray(0, at), Buffer.from([pick(r, [0x00, 0x80, 0xc0, 0xe0, 0xed, 0xef, 0xf0, 0xff, 0x7f, 0x1f])]), b.subarray(at)]);
    default:
      out[at] = out[at]! ^ (1 << Math.floor(r() * 8));
      return out;
  }
}

export function fuzzInput(r: () => number): Buffer {
  const { text, dataBytes } = validHeader(r);
  let t = text;
  const textMutations = Math.floor(r() * 3);
  for (let i = 0; i < textMutations; i++) t = mutateText(r, t);
  let header: Buffer = Buffer.from(t);
  if (r() < 0.15) header = mutateBytes(r, header);
  let data = dataBytes;
  const d = r();
  if (d < 0.05) data += 1;
  else if (d < 0.1 && data > 0) data -= 1;
  const len = Buffer.alloc(8);
  const l = r();
  len.writeBigUInt64LE(BigInt(l < 0.95 ? header.length : l < 0.97 ? header.length + 1 : Math.max(0, header.length - 1)));
  return Buffer.concat([len, header, Buffer.alloc(data, 0x3c)]);
}

function describe(v: OracleVerdict | { ok: boolean; code?: string; tensorCount?: number }): string {
  return JSON.stringify(v);
}

export async function runFuzz(seed: number, count: number, limits: OracleLimits, validate: Validate = validateSafetensors): Promise<FuzzStats> {
  const r = prng(seed);
  const stats: FuzzStats = { seed, tried: 0, accepted: 0, rejected: 0, disagreements: 0, firstDisagreements: [], slowestMs: 0, slowestInput: '', validatorMs: 0, rejectReasons: {} };
  for (let i = 0; i < count; i++) {
    const file = fuzzInput(r);
    const src = { size: file.length, read: async (o: number, l: number) => file.subarray(o, o + l) };
    const t0 = performance.now();
    const got = await validate(src, { maxHeaderBytes: limits.maxHeaderBytes, maxTensors: limits.maxTensors, maxMetadataEntries: limits.maxMetadataEntries });
    const ms = performance.now() - t0;
    stats.validatorMs += ms;
    if (ms > stats.slowestMs) {
      stats.slowestMs = ms;
      stats.slowestInput = file.subarray(8, 8 + 200).toString('latin1');
    }
    const want = oracleValidate(file, limits);
    stats.tried++;
    if (!want.ok) stats.rejectReasons[want.why] = (stats.rejectReasons[want.why] ?? 0) + 1;
    if (got.ok) stats.accepted++;
    else stats.rejected++;
    const same =
      got.ok === want.ok &&
      (!got.ok ||
        (want.ok &&
          got.tensorCount === want.tensorCount &&
          got.dataBytes === want.dataBytes &&
          JSON.stringify(got.dtypes) === JSON.stringify(want.dtypes) &&
          JSON.stringify(got.metadata) === JSON.stringify(want.metadata)));
    if (!same) {
      stats.disagreements++;
      if (stats.firstDisagreements.length < 5) {
        stats.firstDisagreements.push({ header: file.subarray(8).toString('latin1').slice(0, 400), validator: describe(got), oracle: describe(want) });
      }
    }
  }
  return stats;
}

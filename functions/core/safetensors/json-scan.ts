// A strict JSON scanner over UTF-8 bytes with serde_json's rules (the grammar, recursion limit 128, UTF-8 strings whose
// \u escapes leave no lone surrogate, numbers that must not overflow f64, integer literals 0..2^64-1 as u64). It builds
// nothing it is not asked for: skipValue checks a value and moves past it. Subclasses read the parts they need.
import { HeaderParseError } from './header-errors.js';

/** serde_json's default recursion limit: the 128th nested array/object fails. */
export const MAX_JSON_DEPTH = 127;
const U64_MAX = (1n << 64n) - 1n;

export const Ch = {
  Quote: 0x22,
  Backslash: 0x5c,
  Comma: 0x2c,
  Colon: 0x3a,
  LBracket: 0x5b,
  RBracket: 0x5d,
  LBrace: 0x7b,
  RBrace: 0x7d,
  Minus: 0x2d,
} as const;

export type NumberKind = 'u64' | 'other';

export class JsonScanner {
  protected pos = 0;
  /** The value of the last number() that returned 'u64'. */
  protected lastNumber = 0n;

  constructor(protected readonly b: Buffer) {}

  protected end(): void {
    this.ws();
    if (this.pos < this.b.length) this.bad('unexpected characters after the JSON value');
  }

  protected bad(what: string): never {
    throw new HeaderParseError('header_bad_json', `the header is not valid JSON (${what} at byte ${Math.min(this.pos, this.b.length)}); the file is corrupt or not safetensors`);
  }

  protected ws(): void {
    const b = this.b;
    let p = this.pos;
    while (p < b.length) {
      const c = b[p]!;
      if (c !== 0x20 && c !== 0x0a && c !== 0x09 && c !== 0x0d) break;
      p++;
    }
    this.pos = p;
  }

  /** An object key and its colon. */
  protected key(): string {
    if (this.b[this.pos] !== Ch.Quote) this.bad('expected a string key');
    const k = this.string(true)!;
    this.ws();
    if (this.b[this.pos++] !== Ch.Colon) this.bad('expected : after a key');
    this.ws();
    return k;
  }

  protected enter(depth: number): void {
    if (depth > MAX_JSON_DEPTH) {
      throw new HeaderParseError('header_too_deep', `the header nests arrays/objects deeper than ${MAX_JSON_DEPTH} levels, the reference loader's limit`);
    }
  }

  /** `depth` is the nesting of the enclosing container (the top-level object is 1). */
  protected skipValue(depth: number): void {
    const c = this.b[this.pos];
    if (c === Ch.Quote) {
      this.string(false);
    } else if (c === Ch.LBracket || c === Ch.LBrace) {
      const close = c === Ch.LBracket ? Ch.RBracket : Ch.RBrace;
      this.enter(depth + 1);
      this.pos++;
      this.ws();
      if (this.b[this.pos] === close) {
        this.pos++;
        return;
      }
      for (;;) {
        if (close === Ch.RBrace) this.key();
        this.skipValue(depth + 1);
        this.ws();
        const d = this.b[this.pos++];
        if (d === close) return;
        if (d !== Ch.Comma) this.bad('expected , or a closing bracket');
        this.ws();
      }
    } else if (c === Ch.Minus || (c !== undefined && c >= 0x30 && c <= 0x39)) {
      this.number();
    } else {
      this.literal();
    }
  }

  protected literal(): 'null' | 'true' | 'false' {
    for (const word of ['null', 'true', 'false'] as const) {
      if (this.b.toString('latin1', this.pos, this.pos + word.length) === word) {
        this.pos += word.length;
        return word;
      }
    }
    return this.bad('expected a JSON value');
  }

  /** serde_json's number grammar and classes; `lastNumber` holds the value of a u64. */
  protected number(): NumberKind {
    const b = this.b;
    const start = this.pos;
    let p = start;
    const negative = b[p] === Ch.Minus;
    if (negative) p++;
    const intStart = p;
    if (b[p] === 0x30) {
      p++;
      if (b[p] !== undefined && b[p]! >= 0x30 && b[p]! <= 0x39) {
        this.pos = p;
        this.bad('leading zero in a number');
      }
    } else if (b[p] !== undefined && b[p]! >= 0x31 && b[p]! <= 0x39) {
      while (p < b.length && b[p]! >= 0x30 && b[p]! <= 0x39) p++;
    } else {
      this.pos = p;
      this.bad('invalid number');
    }
    const intEnd = p;
    let integer = true;
    if (b[p] === 0x2e) {
      integer = false;
      p++;
      const f = p;
      while (p < b.length && b[p]! >= 0x30 && b[p]! <= 0x39) p++;
      if (p === f) {
        this.pos = p;
        this.bad('invalid number');
      }
    }
    if (b[p] === 0x65 || b[p] === 0x45) {
      integer = false;
      p++;
      if (b[p] === 0x2b || b[p] === Ch.Minus) p++;
      const e = p;
      while (p < b.length && b[p]! >= 0x30 && b[p]! <= 0x39) p++;
      if (p === e) {
        this.pos = p;
        this.bad('invalid number');
      }
    }
    this.pos = p;
    if (integer && !negative) {
      const digits = intEnd - intStart;
      const v = digits <= 15 ? BigInt(Number(b.toString('latin1', intStart, intEnd))) : BigInt(b.toString('latin1', intStart, intEnd));
      if (v <= U64_MAX) {
        this.lastNumber = v;
        return 'u64';
      }
    } else if (integer && intEnd - intStart <= 19) {
      return 'other'; // a negative integer: i64 or, below -2^63, a finite f64
    }
    // A float in serde_json's eyes: it fails when the value overflows f64.
    if (!Number.isFinite(Number(b.toString('latin1', start, p)))) {
      throw new HeaderParseError('header_bad_json', `the header has a number out of range at byte ${start}`);
    }
    return 'other';
  }

  /** A JSON string, checked like serde_json does for a UTF-8 string; returns it only when `keep`. */
  protected string(keep: boolean): string | undefined {
    const b = this.b;
    let p = ++this.pos;
    let out: string[] | undefined;
    let runStart = p;
    for (;;) {
      if (p >= b.length) {
        this.pos = p;
        this.bad('unterminated string');
      }
      const c = b[p]!;
      if (c === Ch.Quote) break;
      if (c < 0x20) {
        this.pos = p;
        this.bad('control character inside a string');
      }
      if (c !== Ch.Backslash) {
        p++;
        continue;
      }
      if (keep) (out ??= []).push(b.toString('utf8', runStart, p));
      const e = b[p + 1];
      p += 2;
      let ch: string;
      switch (e) {
        case 0x22: ch = '"'; break;
        case 0x5c: ch = '\\'; break;
        case 0x2f: ch = '/'; break;
        case 0x62: ch = '\b'; break;
        case 0x66: ch = '\f'; break;
        case 0x6e: ch = '\n'; break;
        case 0x72: ch = '\r'; break;
        case 0x74: ch = '\t'; break;
        case 0x75: {
          const n = this.hex4(p);
          p += 4;
          if (n >= 0xdc00 && n <= 0xdfff) this.surrogate(p);
          if (n >= 0xd800 && n <= 0xdbff) {
            if (b[p] !== Ch.Backslash || b[p + 1] !== 0x75) this.surrogate(p);
            const n2 = this.hex4(p + 2);
            if (n2 < 0xdc00 || n2 > 0xdfff) this.surrogate(p);
            p += 6;
            ch = String.fromCharCode(n, n2);
          } else {
            ch = String.fromCharCode(n);
          }
          break;
        }
        default:
          this.pos = p - 1;
          this.bad('invalid escape in a string');
      }
      if (keep) out!.push(ch);
      runStart = p;
    }
    this.pos = p + 1;
    if (!keep) return undefined;
    const tail = b.toString('utf8', runStart, p);
    if (!out) return tail;
    out.push(tail);
    return out.join('');
  }

  protected surrogate(p: number): never {
    this.pos = p;
    return this.bad('a \\u escape leaves a lone UTF-16 surrogate');
  }

  protected hex4(p: number): number {
    let n = 0;
    for (let i = 0; i < 4; i++) {
      const c = this.b[p + i];
      const d = c === undefined ? -1 : c >= 0x30 && c <= 0x39 ? c - 0x30 : c >= 0x61 && c <= 0x66 ? c - 0x57 : c >= 0x41 && c <= 0x46 ? c - 0x37 : -1;
      if (d < 0) {
        this.pos = p + i;
        this.bad('invalid \\u escape');
      }
      n = n * 16 + d;
    }
    return n;
  }
}

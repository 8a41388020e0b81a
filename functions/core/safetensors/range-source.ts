// Random access to a file-like object by byte range. The validator only ever asks for the first 8 bytes and the header,
// so the same code checks a 2 GB blob (ranged GETs), a file on disk, or a Buffer in a test.
import { open } from 'node:fs/promises';

export interface RangeSource {
  /** Total size in bytes. */
  size: number;
  /** Exactly `length` bytes starting at `offset`; rejects if the range is outside [0, size). */
  read(offset: number, length: number): Promise<Buffer>;
}

export interface FileRangeSource extends RangeSource {
  /** Closes the file handle. Reads after close reject. Safe to call twice. */
  close(): Promise<void>;
}

export function checkRange(size: number, offset: number, length: number): void {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
    throw new RangeError(`invalid range: offset ${offset}, length ${length}`);
  }
  if (offset + length > size) {
    throw new RangeError(`range [${offset}, ${offset + length}) is outside the source (size ${size})`);
  }
}

export function bufferRangeSource(buf: Buffer): RangeSource {
  return {
    size: buf.length,
    async read(offset, length) {
      checkRange(buf.length, offset, length);
      // A copy, so a caller cannot mutate the underlying buffer through the result.
      return Buffer.from(buf.subarray(offset, offset + length));
    },
  };
}

/** Opens `path` once; the caller must `close()` (use try/finally). */
export async function fileRangeSource(path: string): Promise<FileRangeSource> {
  const fh = await open(path, 'r');
  let closed = false;
  let size: number;
  try {
    size = (await fh.stat()).size;
  } catch (err) {
    await fh.close();
    throw err;
  }
  return {
    size,
    async read(offset, length) {
      if (closed) throw new Error(`read from closed file ${path}`);
      checkRange(size, offset, length);
      const out = Buffer.alloc(length);
      let filled = 0;
      // fs reads may return fewer bytes than asked; loop until full or EOF.
      while (filled < length) {
        const { bytesRead } = await fh.read(out, filled, length - filled, offset + filled);
        if (bytesRead === 0) throw new Error(`unexpected end of file ${path} at byte ${offset + filled} (file shrank?)`);
        filled += bytesRead;
      }
      return out;
    },
    async close() {
      if (closed) return;
      closed = true;
      await fh.close();
    },
  };
}

/** Wraps a source and counts what is read through it (tests and benchmarks use this to show validation is cheap). */
export function countingRangeSource(src: RangeSource): RangeSource & { bytesRead: number; reads: number } {
  const counter = {
    size: src.size,
    bytesRead: 0,
    reads: 0,
    async read(offset: number, length: number): Promise<Buffer> {
      counter.reads += 1;
      counter.bytesRead += length;
      return src.read(offset, length);
    },
  };
  return counter;
}

// The disk side of a download: network chunks gathered and written in large pipelined blocks.
import type { FileHandle } from 'node:fs/promises';

/**
 * Buffers network chunks and writes them in large blocks at an explicit position. Writes are pipelined: a block is
 * handed to the file system and reading goes on while it is written; push() only waits when more than
 * `maxInFlight` blocks are queued (back-pressure), so the network and the disk work at the same time.
 */
export class ChunkWriter {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private tail: Promise<void> = Promise.resolve();
  private inFlight = 0;
  private failure: unknown;
  private unsynced = 0;
  constructor(
    private readonly fh: FileHandle,
    private position: number,
    private readonly chunkBytes: number,
    private readonly maxInFlight = 8,
    /** fdatasync after this many written bytes, in the write chain: the final fsync before the rename then has
     * little left to flush, instead of stalling on the whole file at the end. */
    private readonly syncEveryBytes = 64 * 1024 * 1024,
  ) {}

  async push(chunk: Uint8Array): Promise<void> {
    this.pending.push(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
    this.pendingBytes += chunk.byteLength;
    if (this.pendingBytes >= this.chunkBytes) {
      this.enqueue();
      if (this.inFlight > this.maxInFlight) await this.tail;
    }
    if (this.failure) throw this.failure;
  }

  private enqueue(): void {
    if (this.pendingBytes === 0) return;
    // writev: the network chunks go to the file as they are, without being copied into one block first.
    let buffers = this.pending;
    const length = this.pendingBytes;
    this.pending = [];
    this.pendingBytes = 0;
    const at = this.position;
    this.position += length;
    this.inFlight++;
    this.tail = this.tail.then(async () => {
      try {
        if (this.failure) return;
        let off = 0;
        while (off < length) {
          const { bytesWritten } = await this.fh.writev(buffers, at + off);
          off += bytesWritten;
          if (off < length) buffers = [Buffer.concat(buffers).subarray(bytesWritten)]; // short write: rare
        }
        this.unsynced += length;
        if (this.unsynced >= this.syncEveryBytes) {
          this.unsynced = 0;
          await this.fh.datasync();
        }
      } catch (err) {
        this.failure ??= err;
      } finally {
        this.inFlight--;
      }
    });
  }

  /** Writes everything received so far; throws the first write error. */
  async flush(): Promise<void> {
    this.enqueue();
    await this.tail;
    if (this.failure) throw this.failure;
  }
}

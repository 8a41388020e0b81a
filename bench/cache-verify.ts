// What the cache's tamper checks cost (worker-agent/src/cache/tamper.ts): the full sha256 of a cached LoRA on its first
// use after an agent start, and the stamp (one stat) compared on every use.
//   npm run bench:cache-verify -- [sizeMiB=1024] [rounds=3]
// Writes a file of random bytes to a temp dir, then: fileStamp() × 10 000, and sha256File() `rounds` times (the first
// round may read from disk, later ones from the page cache: both are printed). Removes the file afterwards.
import { randomBytes } from 'node:crypto';
import { closeSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileStamp, sha256File } from '../worker-agent/src/cache/tamper.js';

const MiB = 1024 * 1024;
const sizeMiB = Number(process.argv[2] ?? 1024);
const rounds = Number(process.argv[3] ?? 3);

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'bench-cache-verify-'));
  const file = join(dir, 'lora.safetensors');
  try {
    const block = randomBytes(16 * MiB);
    const fd = openSync(file, 'w');
    for (let written = 0; written < sizeMiB * MiB; written += block.length) writeSync(fd, block, 0, Math.min(block.length, sizeMiB * MiB - written));
    closeSync(fd);

    const n = 10_000;
    const s0 = performance.now();
    for (let i = 0; i < n; i++) fileStamp(file);
    const statUs = ((performance.now() - s0) * 1000) / n;
    console.log(`stamp (stat) per use: ${statUs.toFixed(1)} µs (mean of ${n})`);

    for (let r = 1; r <= rounds; r++) {
      const t0 = performance.now();
      await sha256File(file);
      const s = (performance.now() - t0) / 1000;
      console.log(`sha256 round ${r}: ${sizeMiB} MiB in ${s.toFixed(2)} s = ${(sizeMiB / s).toFixed(0)} MiB/s`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

void main();

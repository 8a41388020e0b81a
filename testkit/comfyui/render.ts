// The double's "image": a real PNG (pngjs) whose pixels are a deterministic function of the workflow's parameters, so a
// different seed, prompt or LoRA gives a different file and tests can decode what they downloaded.
import { createHash } from 'node:crypto';
import { PNG } from 'pngjs';

export function renderPng(width: number, height: number, parts: string[]): Buffer {
  const w = Math.min(Math.max(8, width), 2048);
  const h = Math.min(Math.max(8, height), 2048);
  const d = createHash('sha256').update(parts.join('\n')).digest();
  const png = new PNG({ width: w, height: h });
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const i = (y * w + x) * 4;
      const fx = x / w;
      const fy = y / h;
      const ring = Math.sin((fx * d[3]! + fy * d[4]!) / 16) * 0.5 + 0.5;
      png.data[i] = Math.round(d[0]! * (1 - fx) + d[5]! * fx * ring);
      png.data[i + 1] = Math.round(d[1]! * (1 - fy) + d[6]! * fy);
      png.data[i + 2] = Math.round(d[2]! * ring + d[7]! * (1 - ring) * fx);
      png.data[i + 3] = 255;
    }
  }
  return PNG.sync.write(png);
}

// Header-parsing cost of hostile safetensors headers: time and peak RSS of validateSafetensors on each case, every case
// in a fresh child process (so one case's heap does not inflate the next one's RSS).
//   npm run bench:header-cost -- [--module path/to/validate.js] [--max-header-mb 16]
// --module points at another build of the validator (e.g. a copy of the old one) for before/after figures.
// Cases:
//   nested-16MiB   one tensor with an extra field holding 8 Mi nested arrays ("[[[[...]]]]", 16 MiB header)
//   wide-16MiB     one tensor with an extra field holding ~4 Mi empty arrays side by side (depth 3: the reference accepts)
//   meta-500k      __metadata__ with 500 000 keys
import { spawnSync } from 'node:child_process';
import { fileURLToPath, pathToFileURL } from 'node:url';

const MiB = 1024 * 1024;

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

function withLength(header: Buffer, dataBytes: number): Buffer {
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(header.length));
  return Buffer.concat([len, header, Buffer.alloc(dataBytes)]);
}

function buildCase(name: string): Buffer {
  const tensorHead = '{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"x":';
  if (name === 'nested-16MiB') {
    const depth = (16 * MiB - tensorHead.length - 2) / 2;
    return withLength(Buffer.from(tensorHead + '['.repeat(depth) + ']'.repeat(depth) + '}}'), 1);
  }
  if (name === 'wide-16MiB') {
    const n = Math.floor((16 * MiB - tensorHead.length - 4) / 3);
    return withLength(Buffer.from(`${tensorHead}[${'[],'.repeat(n - 1)}[]]}}`), 1);
  }
  if (name === 'meta-500k') {
    const keys: string[] = [];
    for (let i = 0; i < 500_000; i++) keys.push(`"k${i}":"v${i}"`);
    return withLength(Buffer.from(`{"__metadata__":{${keys.join(',')}},"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}`), 1);
  }
  throw new Error(`unknown case ${name}`);
}

async function runChild(caseName: string, modulePath: string, maxHeaderBytes: number): Promise<void> {
  const bytes = buildCase(caseName);
  const mod = (await import(pathToFileURL(modulePath).href)) as {
    validateSafetensors: (src: { size: number; read(o: number, l: number): Promise<Buffer> }, o?: object) => Promise<{ ok: boolean; code?: string }>;
  };
  const src = { size: bytes.length, read: async (o: number, l: number) => bytes.subarray(o, o + l) };
  const rssBefore = process.memoryUsage().rss;
  const t0 = performance.now();
  const r = await mod.validateSafetensors(src, { maxHeaderBytes });
  const ms = performance.now() - t0;
  const peakRss = process.resourceUsage().maxRSS * 1024;
  console.log(JSON.stringify({ case: caseName, headerMiB: +(bytes.readBigUInt64LE(0) / 1024n).toString() / 1024, verdict: r.ok ? 'accepted' : `rejected (${r.code})`, ms: Math.round(ms), rssBeforeMiB: Math.round(rssBefore / MiB), peakRssMiB: Math.round(peakRss / MiB) }));
}

const self = fileURLToPath(import.meta.url);
const modulePath = arg('module') ?? fileURLToPath(new URL('../functions/core/safetensors/validate.js', import.meta.url));
const maxHeaderBytes = Number(arg('max-header-mb') ?? 16) * MiB;
const child = arg('case');
if (child) {
  await runChild(child, modulePath, maxHeaderBytes);
} else {
  console.log(`validator: ${modulePath}, maxHeaderBytes ${maxHeaderBytes}`);
  for (const c of ['nested-16MiB', 'wide-16MiB', 'meta-500k']) {
    const r = spawnSync(process.execPath, [self, '--case', c, '--module', modulePath, '--max-header-mb', String(maxHeaderBytes / MiB)], { encoding: 'utf8' });
    process.stdout.write(r.stdout || `${c}: exit ${r.status} ${r.stderr.split('\n').slice(0, 3).join(' | ')}\n`);
  }
}

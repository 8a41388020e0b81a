// Differential fuzzing of the upload validator against the independent reference model (test/support/).
//   npm run bench:fuzz [-- --count 100000 --seed 18 --module path/to/other/validate.js]
// Prints inputs tried, accepted, rejected, disagreements with the oracle, the slowest input and total validator time.
import { pathToFileURL } from 'node:url';
import { runFuzz } from '../testkit/safetensors-fuzz.js';

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  const v = i >= 0 ? Number(process.argv[i + 1]) : NaN;
  return Number.isFinite(v) && v >= 0 ? v : fallback;
}

const count = arg('count', 100_000);
const seed = arg('seed', 18);
const t0 = performance.now();
const i = process.argv.indexOf('--module');
// --module runs another build of the validator (e.g. a copy of the old one) against the same inputs.
const validate = i >= 0 ? ((await import(pathToFileURL(process.argv[i + 1]!).href)) as typeof import('../functions/core/safetensors/validate.js')).validateSafetensors : undefined;
const stats = await runFuzz(seed, count, { maxHeaderBytes: 16 * 1024 * 1024, maxTensors: 100_000, maxMetadataEntries: 10_000 }, validate);
console.log(JSON.stringify({ ...stats, validatorMs: Math.round(stats.validatorMs), slowestMs: +stats.slowestMs.toFixed(2), wallMs: Math.round(performance.now() - t0) }, null, 2));
if (stats.disagreements > 0) process.exitCode = 1;

// `npm install` in a clone builds dist/ (so `npx lora-router` and `npm start` work at once). A production-only
// install (`npm ci --omit=dev`, e.g. a GPU machine) has no TypeScript: it ships with dist/ or runs the build
// elsewhere, so skip quietly. The build itself is scripts/build.js (the same as `npm run build`).
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

try {
  createRequire(import.meta.url).resolve('typescript/bin/tsc');
} catch {
  console.log('prepare: typescript is not installed (production install); skipping the build');
  process.exit(0);
}
const r = spawnSync(process.execPath, [fileURLToPath(new URL('./build.js', import.meta.url))], { stdio: 'inherit' });
process.exit(r.status ?? 1);

// `npm install` in a clone builds dist/ (so `npx lora-router` and `npm start` work at once). A production-only
// install (the Functions remote build) has no TypeScript: there the build step runs separately, so skip quietly.
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
let tsc;
try {
  tsc = require.resolve('typescript/bin/tsc');
} catch {
  console.log('prepare: typescript is not installed (production install); skipping the build');
  process.exit(0);
}
const r = spawnSync(process.execPath, [tsc, '-p', 'tsconfig.json'], { stdio: 'inherit' });
process.exit(r.status ?? 1);

// `npm run build`. In a clone it compiles everything (tsconfig.json). The Functions deploy package ships
// tsconfig.functions.json and not tsconfig.json (.funcignore), so there, that is, in the Flex Consumption remote build
// (Oryx: `npm install`, then `npm run build`), it compiles the app alone: contract/, dispatch/, functions/.
import { existsSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';

const project = existsSync('tsconfig.json') ? 'tsconfig.json' : 'tsconfig.functions.json';
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
if (process.argv.includes('--print-project')) {
  console.log(project);
  process.exit(0);
}
const r = spawnSync(process.execPath, [tsc, '-p', project], { stdio: 'inherit' });
process.exit(r.status ?? 1);

// `npm run build`. In a clone it compiles everything (tsconfig.json). The Functions deploy package ships
// tsconfig.functions.json and not tsconfig.json (.funcignore), so there, that is, in the Flex Consumption remote build
// (Oryx: `npm install`, then `npm run build`), it compiles the app alone: contract/, dispatch/, functions/.
// Both then bundle the web app (web/ → dist/web), which the Function App serves at /api/app/.
import { existsSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';

const project = existsSync('tsconfig.json') ? 'tsconfig.json' : 'tsconfig.functions.json';
if (process.argv.includes('--print-project')) {
  console.log(project);
  process.exit(0);
}
const require = createRequire(import.meta.url);
const run = (args) => {
  const r = spawnSync(process.execPath, args, { stdio: 'inherit' });
  if (r.status !== 0) process.exit(r.status ?? 1);
};
run([require.resolve('typescript/bin/tsc'), '-p', project]);
if (existsSync('web/vite.config.ts')) {
  run([require.resolve('typescript/bin/tsc'), '-p', 'web/tsconfig.json']);
  const { build } = await import('vite');
  await build({ configFile: 'web/vite.config.ts' });
}

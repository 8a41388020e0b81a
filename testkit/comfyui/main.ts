// Runs the ComfyUI protocol double (./double.ts — a TEST DOUBLE, not ComfyUI) as its own process, the way a real
// ComfyUI runs next to the agent on a GPU box:
//   node dist/testkit/comfyui/main.js --base-dir DIR [--port 8188] [--host 127.0.0.1] [--step-ms 50]
// Prints one JSON line {"comfyui_double": "<url>", "loras_dir": ..., "output_dir": ...} once it listens.
import { parseArgs } from 'node:util';
import { ComfyDouble } from './double.js';

const { values } = parseArgs({
  options: {
    'base-dir': { type: 'string' },
    port: { type: 'string', default: '0' },
    host: { type: 'string', default: '127.0.0.1' },
    'step-ms': { type: 'string', default: '50' },
  },
});
if (!values['base-dir']) {
  process.stderr.write('usage: main.js --base-dir DIR [--port N] [--host H] [--step-ms N]\n');
  process.exit(2);
}
const double = new ComfyDouble({ baseDir: values['base-dir'], port: Number(values.port), host: values.host, stepMs: Number(values['step-ms']) });
const url = await double.start();
process.stdout.write(`${JSON.stringify({ comfyui_double: url, loras_dir: double.lorasDir, output_dir: double.outputDir })}\n`);
const stop = () => void double.stop().then(() => process.exit(0));
process.once('SIGTERM', stop);
process.once('SIGINT', stop);

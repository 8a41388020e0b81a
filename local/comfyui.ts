// The ComfyUI side of a local GPU machine: one ComfyUI protocol double process per agent (testkit/comfyui — a TEST
// DOUBLE of ComfyUI's HTTP + WebSocket API that renders small real PNGs; real ComfyUI needs PyTorch and a GPU), next to
// the agent the way ComfyUI runs next to it on a GPU box, and the agent settings that point EXECUTOR=comfyui at it.
import { join } from 'node:path';
import { AGENT_SETTINGS } from '../worker-agent/src/config.js';
import { startProcess, type Started } from './processes.js';
import { repoRoot } from './settings.js';

export interface ComfyUiProcess extends Started {
  url: string;
  lorasDir: string;
  outputDir: string;
  baseDir: string;
}

/** Starts `node dist/testkit/comfyui/main.js` on a free loopback port and waits for its address. */
export async function startComfyUiDouble(opts: { baseDir: string; stepMs?: number; root?: string; name?: string }): Promise<ComfyUiProcess> {
  const root = opts.root ?? repoRoot();
  const proc = startProcess(opts.name ?? 'comfyui-double', process.execPath, [
    join(root, 'dist/testkit/comfyui/main.js'),
    '--base-dir',
    opts.baseDir,
    '--step-ms',
    String(opts.stepMs ?? 50),
  ]);
  let out = '';
  const info = await new Promise<{ comfyui_double: string; loras_dir: string; output_dir: string }>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`ComfyUI double did not start in 15 s: ${out}`)), 15_000);
    proc.child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      const line = out.split('\n').find((l) => l.startsWith('{"comfyui_double"'));
      if (line) {
        clearTimeout(timer);
        resolve(JSON.parse(line) as { comfyui_double: string; loras_dir: string; output_dir: string });
      }
    });
    proc.child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
    void proc.exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`ComfyUI double exited with ${code}: ${out}`));
    });
  });
  return { ...proc, url: info.comfyui_double, lorasDir: info.loras_dir, outputDir: info.output_dir, baseDir: opts.baseDir };
}

/** Agent settings for EXECUTOR=comfyui against `c`. */
export function comfyUiAgentEnv(c: Pick<ComfyUiProcess, 'url' | 'lorasDir'>, stallSeconds = 60): Record<string, string> {
  return {
    [AGENT_SETTINGS.executor]: 'comfyui',
    [AGENT_SETTINGS.comfyUiUrl]: c.url,
    [AGENT_SETTINGS.comfyUiLoraDir]: c.lorasDir,
    [AGENT_SETTINGS.comfyUiStallSeconds]: String(stallSeconds),
  };
}

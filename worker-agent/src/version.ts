// The agent's version, reported in heartbeats: the package version from the nearest lora-router package.json.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

let cached: string | undefined;

export function agentVersion(): string {
  if (cached) return cached;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const file = join(dir, 'package.json');
    if (existsSync(file)) {
      try {
        const pkg = JSON.parse(readFileSync(file, 'utf8')) as { name?: string; version?: string };
        if (pkg.name === 'lora-router' && pkg.version) return (cached = pkg.version.slice(0, 64));
      } catch {
        // keep looking
      }
    }
    dir = dirname(dir);
  }
  return (cached = 'unknown');
}

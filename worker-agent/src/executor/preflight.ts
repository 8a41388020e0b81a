// Whether EXECUTOR_COMMAND can be started at all: found (on PATH when it has no slash), a regular file, executable by
// this user. Checked by `--check`, at startup (a missing executor stops the agent with exit 78 before it takes work)
// and on every heartbeat while the machine is marked unhealthy (so it recovers once the program is back).
import { accessSync, constants, statSync } from 'node:fs';
import { delimiter, isAbsolute, join, resolve } from 'node:path';

/** The resolved path, or a sentence saying why the command cannot run. */
export function resolveExecutable(command: string, env: NodeJS.ProcessEnv = process.env, cwd = process.cwd()): { ok: true; path: string } | { ok: false; problem: string } {
  const candidates = command.includes('/')
    ? [isAbsolute(command) ? command : resolve(cwd, command)]
    : (env.PATH ?? '').split(delimiter).filter(Boolean).map((dir) => join(dir, command));
  let lastProblem = command.includes('/') ? `${command} does not exist` : `${command} is not on PATH (${env.PATH ?? ''})`;
  for (const path of candidates) {
    let isFile: boolean;
    try {
      isFile = statSync(path).isFile();
    } catch {
      continue;
    }
    if (!isFile) {
      lastProblem = `${path} is not a regular file`;
      continue;
    }
    try {
      accessSync(path, constants.X_OK);
      return { ok: true, path };
    } catch {
      lastProblem = `${path} is not executable by this user (uid ${process.getuid?.() ?? '?'})`;
    }
  }
  return { ok: false, problem: `EXECUTOR_COMMAND: ${lastProblem}` };
}

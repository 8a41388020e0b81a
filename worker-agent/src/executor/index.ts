// Picks the executor named by EXECUTOR: `command` (a child process per job) or `comfyui` (a ComfyUI server next to
// the agent, driven over its HTTP + WebSocket API).
import type { ExecutorConfig } from '../config.js';
import type { Logger } from '../logger.js';
import { CommandExecutor } from './command.js';
import { ComfyUiExecutor } from './comfyui.js';
import { withRunTimeLimit } from './run-limit.js';
import type { JobUser } from './job-user.js';
import type { Executor } from './types.js';

export type { Execution, ExecutionOutcome, ExecutionSink, Executor, ExecutorJob, ExecutorLora } from './types.js';

/** The configured executor, with the maximum run time enforced around it whatever its kind. */
export function createExecutor(config: ExecutorConfig, opts: ExecutorOptions & { maxRunMs: number }): Executor {
  return withRunTimeLimit(baseExecutor(config, opts), opts.maxRunMs);
}

interface ExecutorOptions {
  cancelGraceMs: number;
  log?: Logger;
  /** EXECUTOR_USER resolved (main.ts refuses to start when it cannot be). */
  jobUser?: JobUser;
}

function baseExecutor(config: ExecutorConfig, opts: ExecutorOptions): Executor {
  switch (config.kind) {
    case 'command':
      return new CommandExecutor({ command: config.command, args: config.args, cancelGraceMs: opts.cancelGraceMs, log: opts.log, jobUser: opts.jobUser });
    case 'comfyui':
      return new ComfyUiExecutor({ url: config.url, loraDir: config.loraDir, stallMs: config.stallMs, cancelGraceMs: opts.cancelGraceMs, log: opts.log });
  }
}

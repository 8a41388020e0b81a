// `lora-router agent [--env-file path] [--check]`: runs the GPU worker agent in the foreground (systemd runs it so).
import type { Command } from 'commander';
import type { CliContext } from '../index.js';
import { SETTINGS_HELP } from '../../worker-agent/src/config.js';

export function register(program: Command, _ctx: CliContext): void {
  program
    .command('agent')
    .description('run the GPU worker agent: receive this machine\'s jobs, keep the LoRA cache, heartbeat (stops cleanly on SIGTERM)')
    .option('--env-file <path>', 'read settings from this KEY=VALUE file (the environment still wins), e.g. /etc/lora-router/agent.env')
    .option('--check', 'validate the settings, print them (secrets redacted) and exit')
    .addHelpText('after', SETTINGS_HELP)
    .action(async (opts: { envFile?: string; check?: boolean }) => {
      const { runAgentMain } = await import('../../worker-agent/src/main.js');
      const code = await runAgentMain({ envFile: opts.envFile, check: opts.check });
      // Leftover sockets (SDK keep-alive) must not keep a stopped agent alive: exit explicitly.
      process.exit(code);
    });
}

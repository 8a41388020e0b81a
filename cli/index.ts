// `lora-router` CLI: users (upload, loras, rm, submit, jobs, watch), operators (agent, machines) and dev helpers.
import { Command, Option } from 'commander';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { issueDevToken } from '../functions/core/auth.js';
import { ApiClient, ApiRequestError, resolveApiBase } from '../api-client/index.js';
import { agentVersion } from '../worker-agent/src/version.js';

export interface CliContext {
  api(): ApiClient;
}

/** The local dev secret: env, then local.settings.json, then the committed sample (local mode only). */
function devSecret(): string {
  if (process.env.AUTH_DEV_SECRET) return process.env.AUTH_DEV_SECRET;
  for (const file of ['local.settings.json', 'local.settings.sample.json']) {
    const path = join(process.cwd(), file);
    if (existsSync(path)) {
      const secret = (JSON.parse(readFileSync(path, 'utf8')) as { Values?: Record<string, string> }).Values?.AUTH_DEV_SECRET;
      if (secret) return secret;
    }
  }
  throw new Error('no AUTH_DEV_SECRET: set it, or run from the repository root (local.settings.sample.json)');
}

const program = new Command();
program
  .name('lora-router')
  .description('LoRA-aware GPU job router: upload LoRAs, submit jobs, run GPU agents')
  .option('--api <url>', 'API base URL (default: LORA_ROUTER_API, .local/stack.json, http://127.0.0.1:7071/api)')
  .option('--token <jwt>', 'bearer token (default: LORA_ROUTER_TOKEN)')
  .version(agentVersion(), '-V, --version', 'print the version (the agent reports the same in its heartbeat)')
  .showHelpAfterError();

const ctx: CliContext = {
  api: () => {
    const opts = program.opts<{ api?: string; token?: string }>();
    return new ApiClient({ baseUrl: resolveApiBase(opts.api), token: opts.token ?? process.env.LORA_ROUTER_TOKEN });
  },
};

program
  .command('dev-token')
  .description('print a local development token (verified by the local stack with AUTH_DEV_SECRET)')
  .argument('<subject>', 'user id (tenant) or admin name')
  .addOption(new Option('--role <role>', 'token role').choices(['user', 'admin']).default('user'))
  .option('--ttl <seconds>', 'lifetime in seconds', '43200')
  .action(async (subject: string, opts: { role: 'user' | 'admin'; ttl: string }) => {
    if (!/^[A-Za-z0-9._-]{1,128}$/.test(subject)) throw new Error('subject must be 1-128 chars of A-Z a-z 0-9 . _ -');
    process.stdout.write(`${await issueDevToken(devSecret(), subject, opts.role, Number(opts.ttl))}\n`);
  });

const commandModules = ['loras', 'jobs', 'outputs', 'machines', 'agent', 'smoke', 'report'] as const;
for (const name of commandModules) {
  const mod = (await import(`./commands/${name}.js`).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ERR_MODULE_NOT_FOUND' && String(err.message).includes(`commands/${name}.js`)) return null;
    throw err;
  })) as { register(program: Command, ctx: CliContext): void } | null;
  mod?.register(program, ctx);
}

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof ApiRequestError) {
    process.stderr.write(`error: ${err.message} (${err.code}, HTTP ${err.status})\n`);
  } else {
    process.stderr.write(`error: ${(err as Error).message}\n`);
  }
  process.exitCode = 1;
}

// `lora-router agent --check`: checks what can be checked from a shell, and says what systemd will provide.
//
// The unit gives the agent three things a shell does not have: CACHE_DIRECTORY/STATE_DIRECTORY (CacheDirectory=,
// StateDirectory=) and the machine token as $CREDENTIALS_DIRECTORY/machine-token (LoadCredential=). When they are
// missing here, --check fills them in the way systemd will, says so, and checks the real sources instead (the
// credential file, which is root-only, only for existence). Then: the settings parse, the executor can be started,
// the cache directory is (or can be) writable, the API answers /api/health. Exit 0 when nothing failed, 78 otherwise.
import { accessSync, constants, existsSync, mkdirSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { AgentConfigError, describeConfig, loadAgentConfig, readAgentEnv, CREDENTIAL_NAME } from './config.js';
import { findSetpriv, resolveJobUser } from './executor/job-user.js';
import { resolveExecutable } from './executor/preflight.js';
import { agentVersion } from './version.js';

export const SYSTEMD_CACHE_DIRECTORY = '/var/cache/lora-router';
export const SYSTEMD_STATE_DIRECTORY = '/var/lib/lora-router';
export const SYSTEMD_CREDENTIAL_SOURCE = '/etc/lora-router/credentials/machine-token';

export interface CheckLine {
  status: 'ok' | 'systemd' | 'warn' | 'fail';
  what: string;
  detail: string;
}

function writableDir(path: string): string | null {
  let probe = path;
  while (!existsSync(probe) && dirname(probe) !== probe) probe = dirname(probe);
  try {
    if (!statSync(probe).isDirectory()) return `${probe} is not a directory`;
    accessSync(probe, constants.W_OK | constants.X_OK);
    return null;
  } catch {
    return `${probe} is not writable by this user (uid ${process.getuid?.() ?? '?'})`;
  }
}

/** Whom jobs run as: EXECUTOR_USER must exist (and setpriv be there), else the trusted same-user mode is said aloud. */
function jobUserLine(name: string | undefined): CheckLine {
  if (name === undefined) return { status: 'warn', what: 'job user', detail: "jobs run as the agent's own user (EXECUTOR_TRUSTED_SAME_USER=true: a trusted single-tenant box only)" };
  const user = resolveJobUser(name);
  if ('problem' in user) return { status: 'fail', what: 'job user', detail: user.problem };
  const setpriv = findSetpriv();
  if (!setpriv) return { status: 'fail', what: 'job user', detail: 'EXECUTOR_USER needs setpriv (util-linux), not found' };
  return { status: 'ok', what: 'job user', detail: `jobs run as ${name} (uid ${user.uid}, gid ${user.gid}, groups ${user.groups.join(',')}) through ${setpriv}` };
}

export async function runCheck(opts: { envFile?: string; env: NodeJS.ProcessEnv; fetchTimeoutMs?: number }): Promise<{ code: number; lines: CheckLine[]; config?: Record<string, unknown> }> {
  const lines: CheckLine[] = [];
  lines.push({ status: 'ok', what: 'agent version', detail: `${agentVersion()} on Node ${process.versions.node}${Number(process.versions.node.split('.')[0]) < 22 ? ' (Node 22 is the supported runtime)' : ''}` });
  let env: Record<string, string | undefined>;
  try {
    env = { ...readAgentEnv(opts.envFile, opts.env) };
  } catch (err) {
    lines.push({ status: 'fail', what: 'env file', detail: (err as Error).message });
    return { code: 78, lines };
  }
  if (!env.CACHE_DIR && !env.CACHE_DIRECTORY) {
    env.CACHE_DIRECTORY = SYSTEMD_CACHE_DIRECTORY;
    lines.push({ status: 'systemd', what: 'CACHE_DIR', detail: `not set: systemd provides CACHE_DIRECTORY=${SYSTEMD_CACHE_DIRECTORY} (CacheDirectory=lora-router)` });
  }
  if (!env.STATE_DIR && !env.STATE_DIRECTORY) {
    env.STATE_DIRECTORY = SYSTEMD_STATE_DIRECTORY;
    lines.push({ status: 'systemd', what: 'STATE_DIR', detail: `not set: systemd provides STATE_DIRECTORY=${SYSTEMD_STATE_DIRECTORY} (StateDirectory=lora-router)` });
  }
  if (!env.MACHINE_TOKEN && !env.MACHINE_TOKEN_FILE && !env.CREDENTIALS_DIRECTORY) {
    if (existsSync(SYSTEMD_CREDENTIAL_SOURCE)) {
      lines.push({ status: 'systemd', what: 'machine token', detail: `systemd provides $CREDENTIALS_DIRECTORY/${CREDENTIAL_NAME} from ${SYSTEMD_CREDENTIAL_SOURCE} (LoadCredential=; it exists)` });
    } else {
      lines.push({ status: 'fail', what: 'machine token', detail: `${SYSTEMD_CREDENTIAL_SOURCE} does not exist: write the token from \`lora-router machines register\` there (root:root 0600), or set MACHINE_TOKEN_FILE` });
    }
    env.MACHINE_TOKEN = 'checked-separately'; // lets the rest of the settings be validated
  }
  let config;
  try {
    config = loadAgentConfig(env);
  } catch (err) {
    lines.push({ status: 'fail', what: 'settings', detail: err instanceof AgentConfigError ? err.message : String(err) });
    return { code: 78, lines };
  }
  lines.push({ status: 'ok', what: 'settings', detail: 'all settings parse' });
  if (config.executor.kind === 'command') {
    const exe = resolveExecutable(config.executor.command, opts.env);
    lines.push(exe.ok ? { status: 'ok', what: 'executor', detail: `${exe.path} is executable` } : { status: 'fail', what: 'executor', detail: exe.problem });
    lines.push(jobUserLine(config.executor.jobUser));
  } else {
    // ComfyUI: the agent links LoRAs into its models/loras folder; the server itself is reached per job.
    const loraDirProblem = writableDir(config.executor.loraDir);
    lines.push(
      loraDirProblem
        ? { status: 'fail', what: 'executor', detail: `COMFYUI_LORA_DIR ${config.executor.loraDir}: ${loraDirProblem}` }
        : { status: 'ok', what: 'executor', detail: `ComfyUI at ${config.executor.url}; ${config.executor.loraDir} is writable` },
    );
  }
  const cacheProblem = writableDir(config.cacheDir);
  if (cacheProblem && env.CACHE_DIRECTORY === SYSTEMD_CACHE_DIRECTORY && !opts.env.CACHE_DIRECTORY) {
    lines.push({ status: 'systemd', what: 'cache dir', detail: `${config.cacheDir}: systemd creates it for the service user (${cacheProblem} here)` });
  } else {
    lines.push(cacheProblem ? { status: 'fail', what: 'cache dir', detail: cacheProblem } : { status: 'ok', what: 'cache dir', detail: `${config.cacheDir} is writable` });
  }
  try {
    const res = await fetch(`${config.apiBaseUrl}/health`, { signal: AbortSignal.timeout(opts.fetchTimeoutMs ?? 5_000) });
    lines.push(res.ok ? { status: 'ok', what: 'API', detail: `${config.apiBaseUrl}/health answered ${res.status}` } : { status: 'warn', what: 'API', detail: `${config.apiBaseUrl}/health answered ${res.status}` });
  } catch (err) {
    lines.push({ status: 'warn', what: 'API', detail: `${config.apiBaseUrl} unreachable from here: ${(err as Error).message}` });
  }
  const failed = lines.some((l) => l.status === 'fail');
  return { code: failed ? 78 : 0, lines, config: describeConfig(config) };
}

export function formatCheck(r: { lines: CheckLine[]; config?: Record<string, unknown> }): string {
  const tag = { ok: 'ok     ', systemd: 'systemd', warn: 'warn   ', fail: 'FAIL   ' } as const;
  const out = r.lines.map((l) => `${tag[l.status]}  ${l.what}: ${l.detail}`);
  if (r.config) out.push('', 'settings (secrets redacted):', JSON.stringify(r.config, null, 2));
  return `${out.join('\n')}\n`;
}

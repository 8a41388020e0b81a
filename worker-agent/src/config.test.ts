import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { AGENT_SETTINGS, AgentConfigError, SETTINGS_HELP, loadAgentConfig, parseBytes, parseEnvFile, readAgentEnv, splitCommand } from './config.js';

const dir = mkdtempSync(join(tmpdir(), 'agent-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const base = {
  LORA_ROUTER_API: 'http://127.0.0.1:7071/api/',
  MACHINE_ID: 'gpu-01',
  MACHINE_TOKEN: 'tok',
  CACHE_DIR: '/var/cache/lora-router',
  EXECUTOR_COMMAND: '["node", "job.js"]',
  EXECUTOR_TRUSTED_SAME_USER: 'true',
  DISPATCH_TRANSPORT: 'storage-queue',
  LoraStorage: 'UseDevelopmentStorage=true',
};

describe('agent settings', () => {
  it('has the documented defaults: 5 s heartbeat, 50 GB budget, 7 days TTL, 120 s drain, 10 s cancel grace', () => {
    const c = loadAgentConfig(base, '/');
    expect(c.apiBaseUrl).toBe('http://127.0.0.1:7071/api');
    expect(c.heartbeatMs).toBe(5000);
    expect(c.cacheBudgetBytes).toBe(50 * 1024 ** 3);
    expect(c.cacheTtlMs).toBe(7 * 86_400_000);
    expect(c.drainGraceMs).toBe(120_000);
    expect(c.cancelGraceMs).toBe(10_000);
    expect(c.slots).toBe(1);
    expect(c.pool).toBe('standard');
    expect(c.executor).toEqual({ kind: 'command', command: 'node', args: ['job.js'] });
    expect(c.transport).toMatchObject({ kind: 'storage-queue', prefix: 'machine-' });
    expect(c.stateDir).toBe('/var/cache/lora-router/agent-state');
  });

  it('reads overrides, systemd directories and the LoadCredential token', () => {
    const creds = join(dir, 'creds');
    rmSync(creds, { recursive: true, force: true });
    const { MACHINE_TOKEN: _t, CACHE_DIR: _c, ...rest } = base;
    mkdirSync(creds, { recursive: true });
    writeFileSync(join(creds, 'machine-token'), 'secret-token\n');
    const c = loadAgentConfig(
      { ...rest, CREDENTIALS_DIRECTORY: creds, CACHE_DIRECTORY: '/var/cache/lr', STATE_DIRECTORY: '/var/lib/lr', HEARTBEAT_SECONDS: '1', CACHE_BUDGET: '300MB', SLOTS: '4' },
      '/',
    );
    expect(c.machineToken).toBe('secret-token');
    expect(c.machineTokenSource).toBe('credential');
    expect(c.cacheDir).toBe('/var/cache/lr');
    expect(c.stateDir).toBe('/var/lib/lr');
    expect(c.heartbeatMs).toBe(1000);
    expect(c.cacheBudgetBytes).toBe(300 * 1024 * 1024);
    expect(c.slots).toBe(4);
  });

  it('names the bad setting', () => {
    expect(() => loadAgentConfig({ ...base, SLOTS: '0' })).toThrow(/SLOTS/);
    expect(() => loadAgentConfig({ ...base, CACHE_BUDGET: 'lots' })).toThrow(/CACHE_BUDGET/);
    expect(() => loadAgentConfig({ ...base, MACHINE_ID: 'GPU_01' })).toThrow(/MACHINE_ID/);
    const { MACHINE_TOKEN: _t, ...noToken } = base;
    expect(() => loadAgentConfig(noToken)).toThrow(AgentConfigError);
    expect(() => loadAgentConfig({ ...base, PINNED_LORAS: '../x' })).toThrow(/PINNED_LORAS/);
  });

  it('parses sizes, commands and env files', () => {
    expect(parseBytes('50GB')).toBe(50 * 1024 ** 3);
    expect(parseBytes('1.5 G')).toBe(1.5 * 1024 ** 3);
    expect(parseBytes('12')).toBe(12);
    expect(parseBytes('-1')).toBeUndefined();
    expect(splitCommand(`python3 "my script.py" --x 'a b'`)).toEqual(['python3', 'my script.py', '--x', 'a b']);
    expect(parseEnvFile('# c\nexport A=1\nB="x\\ny"\nC=\'lit $x\'\nD=v # comment\n')).toEqual({ A: '1', B: 'x\ny', C: 'lit $x', D: 'v' });
  });

  it('accepts the sample env file shipped with the agent (the environment wins over the file)', () => {
    const sample = join(process.cwd(), 'worker-agent', 'agent.env.sample');
    const env = readAgentEnv(sample, { MACHINE_TOKEN: 't', CACHE_DIRECTORY: '/var/cache/lora-router', MACHINE_ID: 'gpu-override' });
    const c = loadAgentConfig(env, '/');
    expect(c.machineId).toBe('gpu-override');
    expect(c.transport.kind).toBe('servicebus');
    expect(c.executor.command).toBe('/usr/bin/node');
    expect(c.heartbeatMs).toBe(5000);
    expect(readFileSync(sample, 'utf8')).not.toMatch(/MACHINE_TOKEN=/);
  });

  it('prints and documents every setting of the table, with its default', () => {
    const readme = readFileSync(join(process.cwd(), 'worker-agent', 'README.md'), 'utf8');
    for (const name of Object.values(AGENT_SETTINGS)) {
      expect(SETTINGS_HELP).toMatch(new RegExp(`^ +${name} `, 'm'));
      expect(readme).toContain(`\`${name}\``);
    }
    expect(SETTINGS_HELP).toMatch(/^ +HEARTBEAT_SECONDS +heartbeat interval \(5\)$/m);
    expect(SETTINGS_HELP).toMatch(/^ +CACHE_BUDGET +.*\(50GB\)$/m);
  });

  it('EXECUTOR=comfyui needs COMFYUI_LORA_DIR; URL and stall time have defaults and are checked', () => {
    expect(() => loadAgentConfig({ ...base, EXECUTOR: 'comfyui' }, '/')).toThrow(/Missing setting COMFYUI_LORA_DIR/);
    const c = loadAgentConfig({ ...base, EXECUTOR: 'comfyui', COMFYUI_LORA_DIR: 'comfy/models/loras' }, '/srv');
    expect(c.executor).toEqual({ kind: 'comfyui', url: 'http://127.0.0.1:8188', loraDir: '/srv/comfy/models/loras', stallMs: 300_000 });
    expect(() => loadAgentConfig({ ...base, EXECUTOR: 'comfyui', COMFYUI_LORA_DIR: '/x', COMFYUI_URL: 'localhost:8188' })).toThrow(/Invalid setting COMFYUI_URL/);
    expect(() => loadAgentConfig({ ...base, EXECUTOR: 'comfyui', COMFYUI_LORA_DIR: '/x', COMFYUI_STALL_SECONDS: '0' })).toThrow(/Invalid setting COMFYUI_STALL_SECONDS/);
    expect(() => loadAgentConfig({ ...base, EXECUTOR: 'gpu-magic' })).toThrow(/Invalid setting EXECUTOR/);
  });

  it('refuses to run command jobs as the agent own user unless the box is declared trusted; EXECUTOR_USER is for command only', () => {
    const { EXECUTOR_TRUSTED_SAME_USER: _trusted, ...untrusted } = base;
    expect(() => loadAgentConfig(untrusted, '/')).toThrow(/Missing setting EXECUTOR_USER: jobs must not run as the agent's own user/);
    expect(() => loadAgentConfig({ ...untrusted, EXECUTOR_TRUSTED_SAME_USER: 'false' }, '/')).toThrow(AgentConfigError);
    expect(loadAgentConfig({ ...untrusted, EXECUTOR_USER: 'lora-router-job' }, '/').executor).toEqual({ kind: 'command', command: 'node', args: ['job.js'], jobUser: 'lora-router-job' });
    expect(() => loadAgentConfig({ ...untrusted, EXECUTOR_USER: 'bad user;' }, '/')).toThrow(/Invalid setting EXECUTOR_USER/);
    expect(() => loadAgentConfig({ ...base, EXECUTOR: 'comfyui', COMFYUI_LORA_DIR: '/x', EXECUTOR_USER: 'lora-router-job' }, '/')).toThrow(/run the ComfyUI service itself as the unprivileged job user/);
    // ComfyUI starts no job process: nothing to refuse.
    expect(loadAgentConfig({ ...untrusted, EXECUTOR: 'comfyui', COMFYUI_LORA_DIR: '/x' }, '/').executor.kind).toBe('comfyui');
  });

  it('no longer reads the pre-0.1 names', () => {
    const { CACHE_DIR: _c, ...noCacheDir } = base;
    expect(() => loadAgentConfig({ ...noCacheDir, LORA_CACHE_DIR: '/var/cache/x' })).toThrow(/CACHE_DIR/);
    expect(loadAgentConfig({ ...base, MACHINE_POOL: 'gpu-big' }, '/').pool).toBe('standard');
  });
});

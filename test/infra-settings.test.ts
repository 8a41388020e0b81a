// Cross-checks infra/ (Bicep, azd files) against the code, without a Bicep compiler:
//   - the app settings infra/app/api.bicep sets are the names functions/core/config.ts reads (SETTINGS), all the
//     identity settings azure mode needs are there, and loadConfig() accepts what the Bicep produces;
//   - nothing key- or connection-string-shaped appears anywhere in infra/;
//   - a few structural checks a compiler would catch (balanced delimiters, module params, outputs, API versions).
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { loadConfig, SETTINGS } from '../functions/core/config.js';

const repoRoot = fileURLToPath(new URL('..', import.meta.url));
const read = (relPath: string): string => readFileSync(join(repoRoot, relPath), 'utf8');

function filesUnder(relDir: string, suffix: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(join(repoRoot, relDir), { withFileTypes: true })) {
    const rel = `${relDir}/${entry.name}`;
    if (entry.isDirectory()) out.push(...filesUnder(rel, suffix));
    else if (entry.name.endsWith(suffix)) out.push(rel);
  }
  return out.sort();
}

// ---------------------------------------------------------------------------------------------------------------
// A minimal Bicep reader: enough to blank out comments and string contents (so that braces inside strings do not
// count), check that delimiters balance, and read params, outputs, modules and object keys.
// ---------------------------------------------------------------------------------------------------------------

interface Scanned {
  /** Same length as the source; comments and string contents (with interpolations) replaced by spaces. */
  masked: string;
  /** Same length as the source; only comments replaced by spaces. */
  code: string;
  errors: string[];
}

function scanBicep(src: string): Scanned {
  const out = src.split('');
  const code = src.split('');
  const errors: string[] = [];
  const blank = (from: number, to: number, target: string[] = out) => {
    for (let k = from; k < to; k++) if (target[k] !== '\n') target[k] = ' ';
  };
  const blankComment = (from: number, to: number) => {
    blank(from, to);
    blank(from, to, code);
  };
  const lineOf = (i: number) => src.slice(0, i).split('\n').length;
  const pairs: Record<string, string> = { ')': '(', ']': '[', '}': '{' };

  // Scans code from i; if `interpolation`, stops after the `}` that closes it. Returns the index after the scan.
  function scanCode(i: number, interpolation: boolean): number {
    const stack: { ch: string; at: number }[] = [];
    while (i < src.length) {
      const c = src[i]!;
      if (c === '/' && src[i + 1] === '/') {
        const end = src.indexOf('\n', i);
        const stop = end === -1 ? src.length : end;
        blankComment(i, stop);
        i = stop;
      } else if (c === '/' && src[i + 1] === '*') {
        const end = src.indexOf('*/', i + 2);
        if (end === -1) {
          errors.push(`unclosed block comment at line ${lineOf(i)}`);
          blankComment(i, src.length);
          return src.length;
        }
        blankComment(i, end + 2);
        i = end + 2;
      } else if (src.startsWith("'''", i)) {
        const end = src.indexOf("'''", i + 3);
        if (end === -1) {
          errors.push(`unclosed multi-line string at line ${lineOf(i)}`);
          return src.length;
        }
        blank(i + 3, end);
        i = end + 3;
      } else if (c === "'") {
        i = scanString(i);
      } else if (c === '(' || c === '[' || c === '{') {
        stack.push({ ch: c, at: i });
        i++;
      } else if (c === ')' || c === ']' || c === '}') {
        if (stack.length === 0) {
          if (interpolation && c === '}') return i + 1;
          errors.push(`unmatched '${c}' at line ${lineOf(i)}`);
        } else if (stack[stack.length - 1]!.ch !== pairs[c]) {
          errors.push(`'${c}' at line ${lineOf(i)} closes '${stack[stack.length - 1]!.ch}' from line ${lineOf(stack[stack.length - 1]!.at)}`);
          stack.pop();
        } else {
          stack.pop();
        }
        i++;
      } else {
        i++;
      }
    }
    for (const open of stack) errors.push(`unclosed '${open.ch}' from line ${lineOf(open.at)}`);
    if (interpolation) errors.push('unclosed string interpolation');
    return i;
  }

  // Scans a single-quoted string starting at its opening quote; returns the index after the closing quote.
  function scanString(start: number): number {
    let i = start + 1;
    while (i < src.length) {
      const c = src[i]!;
      if (c === '\n') break;
      if (c === '\\') {
        i += 2;
      } else if (c === "'") {
        blank(start + 1, i);
        return i + 1;
      } else if (c === '$' && src[i + 1] === '{') {
        i = scanCode(i + 2, true);
      } else {
        i++;
      }
    }
    errors.push(`unclosed string at line ${lineOf(start)}`);
    blank(start + 1, i);
    return i;
  }

  scanCode(0, false);
  return { masked: out.join(''), code: code.join(''), errors };
}

/** Index of the delimiter closing the one at `open` (masked text, so strings and comments are already blank). */
function closing(masked: string, open: number): number {
  let depth = 0;
  for (let i = open; i < masked.length; i++) {
    const c = masked[i];
    if (c === '(' || c === '[' || c === '{') depth++;
    else if (c === ')' || c === ']' || c === '}') {
      depth--;
      if (depth === 0) return i;
    }
  }
  throw new Error(`no closing delimiter for index ${open}`);
}

/** `key: value` pairs directly inside the object whose braces are at [open, close]. Values are raw source text. */
function objectEntries(raw: string, masked: string, open: number, close: number): Map<string, string> {
  const entries = new Map<string, string>();
  let depth = 0;
  let lineStart = open + 1;
  let depthAtLineStart = 0;
  for (let i = open + 1; i <= close; i++) {
    const c = masked[i];
    if (c === '\n' || i === close) {
      if (depthAtLineStart === 0) {
        const line = raw.slice(lineStart, i);
        const m = /^\s*(?:([A-Za-z_]\w*)|'([^']*)')\s*:\s*(.*?)\s*$/.exec(line);
        if (m) entries.set((m[1] ?? m[2])!, m[3]!);
      }
      lineStart = i + 1;
      depthAtLineStart = depth;
    }
    if (c === '(' || c === '[' || c === '{') depth++;
    else if (c === ')' || c === ']' || c === '}') depth--;
  }
  return entries;
}

interface BicepFile {
  path: string;
  raw: string;
  masked: string;
  errors: string[];
  params: Map<string, { type: string; defaultRaw?: string }>;
  vars: Map<string, string>;
  outputs: Set<string>;
}

function loadBicep(relPath: string): BicepFile {
  const raw = read(relPath);
  const { masked, errors } = scanBicep(raw);
  const params = new Map<string, { type: string; defaultRaw?: string }>();
  const vars = new Map<string, string>();
  const outputs = new Set<string>();
  const rawLines = raw.split('\n');
  masked.split('\n').forEach((maskedLine, n) => {
    const rawLine = rawLines[n]!;
    const p = /^param\s+(\w+)\s+([\w.[\]]+)(\s*=)?/.exec(maskedLine);
    if (p) params.set(p[1]!, { type: p[2]!, defaultRaw: p[3] ? rawLine.slice(rawLine.indexOf('=') + 1).trim() : undefined });
    const v = /^var\s+(\w+)\s*=/.exec(maskedLine);
    if (v) vars.set(v[1]!, rawLine.slice(rawLine.indexOf('=') + 1).trim());
    const o = /^output\s+(\w+)\s/.exec(maskedLine);
    if (o) outputs.add(o[1]!);
  });
  return { path: relPath, raw, masked, errors, params, vars, outputs };
}

interface ModuleUse {
  symbol: string;
  file: string;
  params: Map<string, string>;
}

function modulesOf(file: BicepFile, dir: string): ModuleUse[] {
  const uses: ModuleUse[] = [];
  const re = /^module\s+(\w+)\s+'([^']+)'\s*=\s*\{/gm;
  for (let m = re.exec(file.raw); m; m = re.exec(file.raw)) {
    const open = m.index + m[0].length - 1;
    const body = objectEntries(file.raw, file.masked, open, closing(file.masked, open));
    const paramsAt = file.masked.indexOf('params:', open);
    const paramsOpen = file.masked.indexOf('{', paramsAt);
    const params = body.has('params') ? objectEntries(file.raw, file.masked, paramsOpen, closing(file.masked, paramsOpen)) : new Map<string, string>();
    uses.push({ symbol: m[1]!, file: `${dir}/${m[2]!}`, params });
  }
  return uses;
}

/** A Bicep literal's value ('text' without interpolation, number, bool), or undefined for any expression. */
function literal(expr: string | undefined): string | undefined {
  if (expr === undefined) return undefined;
  const s = /^'((?:[^'\\$]|\\.)*)'$/.exec(expr);
  if (s) return s[1]!.replace(/\\(.)/g, '$1');
  if (/^-?\d+$/.test(expr) || expr === 'true' || expr === 'false') return expr;
  return undefined;
}

// ---------------------------------------------------------------------------------------------------------------

const main = loadBicep('infra/main.bicep');
const api = loadBicep('infra/app/api.bicep');
const mainModules = modulesOf(main, 'infra');
const apiModule = mainModules.find((m) => m.file === 'infra/app/api.bicep');

interface AppSetting {
  name: string;
  valueRaw: string;
}

/** The `{ name: '...', value: ... }` entries of siteConfig.appSettings in api.bicep. */
function appSettingsOf(file: BicepFile): AppSetting[] {
  const at = file.masked.search(/\bappSettings:\s*\[/);
  if (at === -1) throw new Error(`${file.path}: no appSettings list`);
  const open = file.masked.indexOf('[', at);
  const close = closing(file.masked, open);
  const settings: AppSetting[] = [];
  for (let i = open + 1; i < close; i++) {
    if (file.masked[i] !== '{') continue;
    const end = closing(file.masked, i);
    const entries = objectEntries(file.raw, file.masked, i, end);
    const name = literal(entries.get('name'));
    if (!name) throw new Error(`${file.path}: app setting without a literal name near index ${i}`);
    settings.push({ name, valueRaw: entries.get('value') ?? '' });
    i = end;
  }
  return settings;
}

/** Follows an api.bicep value back to a literal: api param default -> main module arg -> main param default / var. */
function staticValue(valueRaw: string): string | undefined {
  const direct = literal(valueRaw);
  if (direct !== undefined) return direct;
  if (!/^[A-Za-z_]\w*$/.test(valueRaw)) return undefined;
  const apiParam = api.params.get(valueRaw);
  if (!apiParam) return undefined;
  if (apiParam.defaultRaw !== undefined) return literal(apiParam.defaultRaw);
  const arg = apiModule?.params.get(valueRaw);
  if (arg === undefined) return undefined;
  if (literal(arg) !== undefined) return literal(arg);
  if (main.vars.has(arg)) return literal(main.vars.get(arg));
  return literal(main.params.get(arg)?.defaultRaw);
}

const settings = appSettingsOf(api);
const settingNames = settings.map((s) => s.name);
const codeNames = new Set<string>(Object.values(SETTINGS));
const isHostSetting = (name: string) => /^(AzureWebJobsStorage__|APPLICATIONINSIGHTS_|FUNCTIONS_|WEBSITE_)/.test(name);

// Values only Azure knows at deploy time (resource endpoints, identity ids, the Key Vault reference's target).
const GUID = '11111111-2222-3333-4444-555555555555';
const RUNTIME_VALUES: Record<string, string> = {
  AzureWebJobsStorage__clientId: GUID,
  AzureWebJobsStorage__blobServiceUri: 'https://stexample.blob.core.windows.net/',
  APPLICATIONINSIGHTS_CONNECTION_STRING: `InstrumentationKey=${GUID};IngestionEndpoint=https://example.in.applicationinsights.azure.com/`,
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: `ClientId=${GUID};Authorization=AAD`,
  LoraStorage__blobServiceUri: 'https://stexample.blob.core.windows.net/',
  LoraStorage__clientId: GUID,
  CosmosDb__accountEndpoint: 'https://cosmos-example.documents.azure.com:443/',
  CosmosDb__clientId: GUID,
  COSMOS_DATABASE: 'lora-router',
  ServiceBus__fullyQualifiedNamespace: 'sb-example.servicebus.windows.net',
  ServiceBus__clientId: GUID,
  SERVICEBUS_QUEUE: 'jobs',
  AUTH_ISSUER: `https://login.microsoftonline.com/${GUID}/v2.0`,
  AUTH_AUDIENCE: GUID,
  AUTH_JWKS_URI: `https://login.microsoftonline.com/${GUID}/discovery/v2.0/keys`,
  // What the Key Vault reference resolves to: the HMAC secret (main.bicep makes it at least 32 characters).
  MACHINE_TOKEN_SECRET: 'k'.repeat(79),
};

describe('app settings in infra/app/api.bicep', () => {
  it('are parsed from the siteConfig.appSettings list, each once', () => {
    expect(settingNames.length).toBeGreaterThan(20);
    expect(new Set(settingNames).size).toBe(settingNames.length);
  });

  it('(a) are names the code reads (SETTINGS in functions/core/config.ts), apart from host settings', () => {
    const unknown = settingNames.filter((n) => !isHostSetting(n) && !codeNames.has(n));
    expect(unknown).toEqual([]);
  });

  it('(b) include every identity setting azure mode needs', () => {
    const required = [
      'LORA_ROUTER_MODE',
      'LoraStorage__blobServiceUri',
      'CosmosDb__accountEndpoint',
      'ServiceBus__fullyQualifiedNamespace',
      'AUTH_ISSUER',
      'AUTH_AUDIENCE',
      'AUTH_JWKS_URI',
      'MACHINE_TOKEN_SECRET',
      'DISPATCH_TRANSPORT',
      // and the host's own identity-based storage connection
      'AzureWebJobsStorage__credential',
      'AzureWebJobsStorage__clientId',
      'AzureWebJobsStorage__blobServiceUri',
    ];
    expect(required.filter((n) => !settingNames.includes(n))).toEqual([]);
  });

  it('set no queue endpoint: Azure dispatches over Service Bus and the host has no queue trigger', () => {
    expect(settingNames.filter((n) => /queueServiceUri/i.test(n))).toEqual([]);
    expect(read('infra/app/rbac.bicep')).not.toMatch(/storageQueueDataContributor|974c5e8b-45b9-4653-ba55-5f855dd0fb88/);
  });

  it('an unresolved Key Vault reference in any setting stops the app (it would pass the 32-character check)', () => {
    const env: Record<string, string> = {};
    for (const s of settings) env[s.name] = staticValue(s.valueRaw) ?? RUNTIME_VALUES[s.name]!;
    const secretUri = 'https://kv-abc123.vault.azure.net/secrets/machine-token-secret';
    expect(() => loadConfig({ ...env, MACHINE_TOKEN_SECRET: `@Microsoft.KeyVault(SecretUri=${secretUri})` })).toThrow(
      /MACHINE_TOKEN_SECRET is an unresolved Key Vault reference/,
    );
    expect(() => loadConfig({ ...env, AUTH_AUDIENCE: ' @microsoft.appconfiguration(Endpoint=https://x.azconfig.io; Key=k)' })).toThrow(
      /AUTH_AUDIENCE is an unresolved App Configuration reference/,
    );
    expect(loadConfig(env).auth.machineTokenSecret).toBe(RUNTIME_VALUES.MACHINE_TOKEN_SECRET);
  });

  it('set azure mode, Service Bus dispatch, Entra auth and managed-identity credentials literally', () => {
    const value = (n: string) => literal(settings.find((s) => s.name === n)?.valueRaw);
    expect(value('LORA_ROUTER_MODE')).toBe('azure');
    expect(value('DISPATCH_TRANSPORT')).toBe('servicebus');
    expect(value('AUTH_MODE')).toBe('entra');
    for (const n of settingNames.filter((n) => n.endsWith('__credential'))) expect(value(n), n).toBe('managedidentity');
    // Every identity connection names the user-assigned identity (there is no system-assigned one).
    for (const prefix of ['AzureWebJobsStorage', 'LoraStorage', 'CosmosDb', 'ServiceBus']) {
      expect(settingNames, prefix).toContain(`${prefix}__clientId`);
      expect(settingNames, prefix).toContain(`${prefix}__credential`);
    }
  });

  it('read MACHINE_TOKEN_SECRET through a Key Vault reference with the user-assigned identity', () => {
    const secret = settings.find((s) => s.name === 'MACHINE_TOKEN_SECRET')!;
    expect(secret.valueRaw).toMatch(/^'@Microsoft\.KeyVault\(SecretUri=\$\{\w+\}\)'$/);
    expect(api.raw).toMatch(/keyVaultReferenceIdentity:\s*identityId/);
  });

  it('(c) hold no connection string or key: no `LoraStorage`/`CosmosDb`/`ServiceBus`/`AzureWebJobsStorage` settings', () => {
    for (const forbidden of ['LoraStorage', 'CosmosDb', 'ServiceBus', 'AzureWebJobsStorage', 'AUTH_DEV_SECRET']) {
      expect(settingNames, forbidden).not.toContain(forbidden);
    }
    const connectionStrings = settingNames.filter((n) => /connection_?string/i.test(n) && n !== 'APPLICATIONINSIGHTS_CONNECTION_STRING');
    expect(connectionStrings).toEqual([]);
  });

  it('(d) are accepted by loadConfig() once Azure fills in the deploy-time values', () => {
    const env: Record<string, string> = {};
    const unresolved: string[] = [];
    for (const s of settings) {
      const value = staticValue(s.valueRaw) ?? RUNTIME_VALUES[s.name];
      if (value === undefined) unresolved.push(`${s.name} = ${s.valueRaw}`);
      else env[s.name] = value;
    }
    // A new setting whose value is an expression needs a plausible value in RUNTIME_VALUES above.
    expect(unresolved).toEqual([]);

    const config = loadConfig(env);
    expect(config.mode).toBe('azure');
    expect(config.transport).toBe('servicebus');
    expect(config.storage.kind).toBe('identity');
    expect(config.cosmos.kind).toBe('identity');
    expect(config.serviceBus?.kind).toBe('identity');
    expect(config.auth.mode).toBe('entra');
    // The tunables come from main.bicep's defaults and must match the app's own defaults.
    expect(env.SCHEDULER_SCHEDULE).toBe('*/2 * * * * *');
    expect(config.schedulerSchedule).toBe('*/2 * * * * *');
    expect(config.reaperSchedule).toBe('*/2 * * * * *');
    const appDefaults = loadConfig({
      LORA_ROUTER_MODE: 'azure',
      LoraStorage__blobServiceUri: env.LoraStorage__blobServiceUri,
      CosmosDb__accountEndpoint: env.CosmosDb__accountEndpoint,
      ServiceBus__fullyQualifiedNamespace: env.ServiceBus__fullyQualifiedNamespace,
      AUTH_ISSUER: env.AUTH_ISSUER,
      AUTH_AUDIENCE: env.AUTH_AUDIENCE,
      AUTH_JWKS_URI: env.AUTH_JWKS_URI,
      MACHINE_TOKEN_SECRET: env.MACHINE_TOKEN_SECRET,
    });
    const { storage: _s, cosmos: _c, serviceBus: _b, auth: _a, ...tunables } = config;
    const { storage: _s2, cosmos: _c2, serviceBus: _b2, auth: _a2, ...defaults } = appDefaults;
    expect(tunables).toEqual(defaults);
  });
});

describe('identity only', () => {
  const infraFiles = [...filesUnder('infra', '.bicep'), ...filesUnder('infra', '.json'), ...filesUnder('infra/scripts', '')]
    .filter((f, i, all) => all.indexOf(f) === i);

  it('(c) no account keys, SAS keys or connection strings anywhere in infra/', () => {
    for (const file of infraFiles) {
      const text = read(file);
      for (const pattern of [/AccountKey=/i, /SharedAccessKey/i, /listConnectionStrings/i, /primaryMasterKey/i, /primaryConnectionString/i, /\.listKeys\(\)/]) {
        expect(pattern.test(text), `${file} matches ${pattern}`).toBe(false);
      }
      // The one listKeys allowed: the function host's system key for the Event Grid webhook (blob-events.bicep).
      for (const m of text.matchAll(/listKeys\(([^)]*)\)/g)) {
        expect(m[1], `${file}: ${m[0]}`).toMatch(/\/host\/default'/);
      }
    }
  });

  it('local auth is switched off on storage, Cosmos DB, Service Bus and Application Insights', () => {
    expect(read('infra/app/storage.bicep')).toMatch(/allowSharedKeyAccess:\s*false/);
    expect(read('infra/app/storage.bicep')).toMatch(/allowBlobPublicAccess:\s*false/);
    expect(read('infra/app/storage.bicep')).toMatch(/minimumTlsVersion:\s*'TLS1_2'/);
    expect(read('infra/app/cosmos.bicep')).toMatch(/disableLocalAuth:\s*true/);
    expect(read('infra/app/cosmos.bicep')).toMatch(/name:\s*'EnableServerless'/);
    expect(read('infra/app/servicebus.bicep')).toMatch(/disableLocalAuth:\s*true/);
    expect(read('infra/app/monitoring.bicep')).toMatch(/DisableLocalAuth:\s*true/);
    expect(read('infra/app/keyvault.bicep')).toMatch(/enableRbacAuthorization:\s*true/);
  });

  it('the jobs queue has sessions and duplicate detection', () => {
    const sb = read('infra/app/servicebus.bicep');
    for (const p of [/requiresSession:\s*true/, /lockDuration:\s*'PT1M'/, /maxDeliveryCount:\s*10/, /requiresDuplicateDetection:\s*true/, /duplicateDetectionHistoryTimeWindow:\s*'PT10M'/, /deadLetteringOnMessageExpiration:\s*true/]) {
      expect(sb).toMatch(p);
    }
  });

  it('Cosmos DB role assignments are written one after another (the account takes one at a time)', () => {
    const blocks = read('infra/app/rbac.bicep').split(/\n(?=(?:\/\/[^\n]*\n)*resource )/).filter((b) => /^(?:\/\/[^\n]*\n)*resource \w+ 'Microsoft\.DocumentDB\/databaseAccounts\/sqlRoleAssignments@/.test(b));
    expect(blocks.length).toBeGreaterThanOrEqual(2);
    const names = blocks.map((b) => /resource (\w+)/.exec(b)![1]!);
    blocks.slice(1).forEach((b, i) => expect(b, names[i + 1]).toMatch(new RegExp(`dependsOn:\\s*\\[[^\\]]*\\b${names[i]}\\b`)));
  });

  it('Flex Consumption scale parameters are limited to what the platform accepts', () => {
    const apiSrc = read('infra/app/api.bicep');
    expect(apiSrc).toMatch(/@allowed\(\[\s*512\s+2048\s+4096\s*\]\)\s*param instanceMemoryMB int/);
    expect(apiSrc).toMatch(/@minValue\(40\)\s*@maxValue\(1000\)\s*param maximumInstanceCount int/);
    expect(read('infra/main.bicep')).toMatch(/@allowed\(\[\s*'512'\s+'2048'\s+'4096'\s*\]\)\s*param functionInstanceMemoryMB string/);
  });

  it('the GPU fleet gets Service Bus Data Receiver on the queue only, and no other role', () => {
    const rbac = loadBicep('infra/app/rbac.bicep');
    const fleetBlocks = rbac.raw.split(/\n(?=resource )/).filter((b) => /principalId:\s*fleetPrincipalId/.test(b));
    expect(fleetBlocks).toHaveLength(1);
    expect(fleetBlocks[0]).toMatch(/roleIds\.serviceBusDataReceiver/);
    expect(fleetBlocks[0]).toMatch(/scope:\s*jobsQueue/);
  });
});

describe('Bicep structure (what a compiler would catch)', () => {
  const bicepFiles = filesUnder('infra', '.bicep').map(loadBicep);

  it('every file has balanced delimiters and closed strings and comments', () => {
    for (const f of bicepFiles) expect(f.errors, f.path).toEqual([]);
  });

  it('uses GA API versions only', () => {
    for (const f of bicepFiles) {
      for (const m of f.raw.matchAll(/'(Microsoft\.[\w.]+\/[\w/.]+)@([^']+)'/g)) {
        expect(m[2], `${f.path}: ${m[1]}`).toMatch(/^\d{4}-\d{2}-\d{2}$/);
      }
    }
  });

  it('main.bicep modules exist, get every required param and only declared ones', () => {
    expect(mainModules.map((m) => m.symbol).sort()).toEqual(['api', 'cosmos', 'identity', 'keyVault', 'monitoring', 'rbac', 'serviceBus', 'storage']);
    for (const use of mainModules) {
      expect(existsSync(join(repoRoot, use.file)), use.file).toBe(true);
      const mod = loadBicep(use.file);
      const declared = [...mod.params.keys()];
      const required = declared.filter((p) => mod.params.get(p)!.defaultRaw === undefined);
      expect([...use.params.keys()].filter((p) => !declared.includes(p)), `${use.symbol}: unknown params`).toEqual([]);
      expect(required.filter((p) => !use.params.has(p)), `${use.symbol}: missing params`).toEqual([]);
    }
  });

  it('every <module>.outputs.<name> used in main.bicep is declared by that module', () => {
    const bySymbol = new Map(mainModules.map((m) => [m.symbol, loadBicep(m.file)]));
    const { code } = scanBicep(main.raw);
    const refs = [...code.matchAll(/\b(\w+)\.outputs\.(\w+)/g)];
    expect(refs.length).toBeGreaterThan(10);
    for (const [, symbol, output] of refs) {
      expect(bySymbol.has(symbol!), `module ${symbol}`).toBe(true);
      expect(bySymbol.get(symbol!)!.outputs.has(output!), `${symbol}.outputs.${output}`).toBe(true);
    }
  });

  it('main.parameters.json maps only declared params, with the azd substitutions', () => {
    const file = JSON.parse(read('infra/main.parameters.json')) as { parameters: Record<string, { value: string }> };
    const mapped = Object.keys(file.parameters);
    expect(mapped.filter((p) => !main.params.has(p))).toEqual([]);
    expect(file.parameters.environmentName!.value).toBe('${AZURE_ENV_NAME}');
    expect(file.parameters.location!.value).toBe('${AZURE_LOCATION}');
    expect(file.parameters.principalId!.value).toBe('${AZURE_PRINCIPAL_ID}');
    expect(file.parameters.machineTokenSecret!.value).toMatch(/^\$\(secretOrRandomPassword \$\{AZURE_KEY_VAULT_NAME\} machine-token-secret\)$/);
    // Params without a default must be mapped (azd prompts for the ones whose env var is unset).
    const required = [...main.params.entries()].filter(([, p]) => p.defaultRaw === undefined).map(([n]) => n);
    expect(required.filter((p) => !mapped.includes(p))).toEqual([]);
    // The Key Vault name that secretOrRandomPassword reads is an output of main.bicep.
    expect(main.outputs.has('AZURE_KEY_VAULT_NAME')).toBe(true);
  });

  it('azure.yaml deploys the repo root as a TypeScript function app and runs the postdeploy hook', () => {
    const yaml = read('azure.yaml');
    expect(yaml).toMatch(/^name: lora-router$/m);
    expect(yaml).toMatch(/^ {2}api:\n {4}project: \.\n {4}language: ts\n {4}host: function$/m);
    const runs = [...yaml.matchAll(/run: \.\/(\S+)/g)].map((m) => m[1]!);
    expect(runs.sort()).toEqual(['infra/scripts/postdeploy.ps1', 'infra/scripts/postdeploy.sh']);
    for (const script of runs) expect(existsSync(join(repoRoot, script)), script).toBe(true);
  });

  it('the postdeploy hook reads only values main.bicep outputs and deploys blob-events.bicep', () => {
    const sh = read('infra/scripts/postdeploy.sh');
    const ps1 = read('infra/scripts/postdeploy.ps1');
    const needed = [...sh.matchAll(/: "\$\{(\w+):\?/g)].map((m) => m[1]!);
    expect(needed.length).toBeGreaterThan(3);
    for (const name of needed) {
      expect(main.outputs.has(name), `${name} is an output of main.bicep`).toBe(true);
      expect(ps1, `postdeploy.ps1 checks ${name}`).toContain(`'${name}'`);
    }
    const events = loadBicep('infra/app/blob-events.bicep');
    for (const p of events.params.keys()) {
      if (events.params.get(p)!.defaultRaw === undefined) {
        expect(sh, `postdeploy.sh passes ${p}`).toContain(`${p}=`);
        expect(ps1, `postdeploy.ps1 passes ${p}`).toContain(`${p}=`);
      }
    }
    expect(events.raw).toMatch(/functionName=\$\{functionName\}&code=\$\{eventGridKey\}/);
    expect(literal(events.params.get('functionName')!.defaultRaw)).toBe('loraBlobCreated');
  });
});

// Which @azure/identity credential each agent configuration builds, end to end from the settings (as systemd passes
// them) through loadAgentConfig to the credential the transport receives.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  ClientCertificateCredential,
  DefaultAzureCredential,
  ManagedIdentityCredential,
  WorkloadIdentityCredential,
} from '@azure/identity';
import { generate } from 'selfsigned';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentConfigError, describeConfig, loadAgentConfig } from './config.js';
import { buildCredential, CERTIFICATE_CREDENTIAL_NAME, type AgentCredentialConfig } from './identity.js';

const dir = mkdtempSync(join(tmpdir(), 'agent-identity-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const TENANT = '72f988bf-86f1-41af-91ab-2d7cd011db47';
const CLIENT = '11111111-2222-3333-4444-555555555555';
const base = {
  LORA_ROUTER_API: 'https://func-api-x.azurewebsites.net/api',
  MACHINE_ID: 'gpu-01',
  MACHINE_TOKEN: 'tok',
  CACHE_DIR: '/var/cache/lora-router',
  EXECUTOR_COMMAND: '["python3", "run.py"]',
  EXECUTOR_TRUSTED_SAME_USER: 'true',
  DISPATCH_TRANSPORT: 'servicebus',
  ServiceBus__fullyQualifiedNamespace: 'sb-x.servicebus.windows.net',
};

function credentialOf(env: Record<string, string>): { config: AgentCredentialConfig; credential: unknown } {
  const c = loadAgentConfig({ ...base, ...env }, '/');
  if (c.transport.connection.kind !== 'identity') throw new Error('expected an identity connection');
  return { config: c.transport.connection.credential, credential: buildCredential(c.transport.connection.credential) };
}

let pemWithKey: string;
let credDir: string;
beforeAll(async () => {
  const pems = await generate([{ name: 'commonName', value: 'lora-router-agent' }], { keySize: 2048 });
  pemWithKey = join(dir, 'sp.pem');
  writeFileSync(pemWithKey, `${pems.private}\n${pems.cert}\n`, { mode: 0o600 });
  writeFileSync(join(dir, 'cert-only.pem'), pems.cert);
  credDir = join(dir, 'credentials');
  mkdirSync(credDir);
  writeFileSync(join(credDir, CERTIFICATE_CREDENTIAL_NAME), `${pems.private}\n${pems.cert}\n`, { mode: 0o600 });
  writeFileSync(join(dir, 'federated-token'), 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJncHUtMDEifQ.sig');
});

describe('agent identity, chosen by AZURE_CREDENTIAL', () => {
  it('managed-identity: a VM user-assigned identity (AZURE_CLIENT_ID or ServiceBus__clientId)', () => {
    const a = credentialOf({ AZURE_CREDENTIAL: 'managed-identity', AZURE_CLIENT_ID: CLIENT });
    expect(a.credential).toBeInstanceOf(ManagedIdentityCredential);
    expect(a.config).toEqual({ kind: 'managed-identity', clientId: CLIENT });
    expect(credentialOf({ AZURE_CREDENTIAL: 'managed-identity', ServiceBus__clientId: CLIENT }).config).toEqual({ kind: 'managed-identity', clientId: CLIENT });
    expect(() => credentialOf({ AZURE_CREDENTIAL: 'managed-identity' })).toThrow(/Missing setting AZURE_CLIENT_ID/);
  });

  it('arc: the server\'s system-assigned identity through HIMDS, and never with a client id', () => {
    const a = credentialOf({ AZURE_CREDENTIAL: 'arc', IDENTITY_ENDPOINT: 'http://localhost:40342/metadata/identity/oauth2/token', IMDS_ENDPOINT: 'http://localhost:40342' });
    expect(a.credential).toBeInstanceOf(ManagedIdentityCredential);
    expect(a.config.kind).toBe('arc');
    // The issue this fixes: a client id used to force a user-assigned managed-identity login, which Arc refuses.
    expect(() => credentialOf({ AZURE_CREDENTIAL: 'arc', ServiceBus__clientId: CLIENT, IDENTITY_ENDPOINT: 'http://localhost:40342/x', IMDS_ENDPOINT: 'http://localhost:40342' })).toThrow(
      /system-assigned identity: unset AZURE_CLIENT_ID/,
    );
    // Not an Arc server (this machine has no azcmagent): said so at startup rather than at the first token request.
    expect(() => credentialOf({ AZURE_CREDENTIAL: 'arc' })).toThrow(/not an Azure Arc-enabled server/);
  });

  it('certificate: a service principal with a PEM certificate from AZURE_CLIENT_CERTIFICATE_PATH or LoadCredential', () => {
    const a = credentialOf({ AZURE_CREDENTIAL: 'certificate', AZURE_TENANT_ID: TENANT, AZURE_CLIENT_ID: CLIENT, AZURE_CLIENT_CERTIFICATE_PATH: pemWithKey });
    expect(a.credential).toBeInstanceOf(ClientCertificateCredential);
    expect(a.config).toMatchObject({ kind: 'certificate', tenantId: TENANT, clientId: CLIENT, certificatePath: pemWithKey });
    // systemd: LoadCredential=azure-client-certificate:/etc/lora-router/credentials/azure-client.pem
    const b = credentialOf({ AZURE_CREDENTIAL: 'certificate', AZURE_TENANT_ID: TENANT, AZURE_CLIENT_ID: CLIENT, CREDENTIALS_DIRECTORY: credDir });
    expect(b.credential).toBeInstanceOf(ClientCertificateCredential);
    expect(b.config).toMatchObject({ certificatePath: join(credDir, CERTIFICATE_CREDENTIAL_NAME) });
    // With ServiceBus__clientId also set (the combination that used to force managed identity), still a certificate.
    expect(credentialOf({ AZURE_CREDENTIAL: 'certificate', AZURE_TENANT_ID: TENANT, ServiceBus__clientId: CLIENT, AZURE_CLIENT_CERTIFICATE_PATH: pemWithKey }).credential).toBeInstanceOf(
      ClientCertificateCredential,
    );
    expect(() => credentialOf({ AZURE_CREDENTIAL: 'certificate', AZURE_TENANT_ID: TENANT, AZURE_CLIENT_ID: CLIENT })).toThrow(/Missing setting AZURE_CLIENT_CERTIFICATE_PATH/);
    expect(() =>
      credentialOf({ AZURE_CREDENTIAL: 'certificate', AZURE_TENANT_ID: TENANT, AZURE_CLIENT_ID: CLIENT, AZURE_CLIENT_CERTIFICATE_PATH: join(dir, 'cert-only.pem') }),
    ).toThrow(/holds no PEM private key/);
    expect(() => credentialOf({ AZURE_CREDENTIAL: 'certificate', AZURE_CLIENT_ID: CLIENT, AZURE_CLIENT_CERTIFICATE_PATH: pemWithKey })).toThrow(/Missing setting AZURE_TENANT_ID/);
  });

  it('workload-identity: an external OIDC token in a file, exchanged through a federated credential', () => {
    const tokenFile = join(dir, 'federated-token');
    const a = credentialOf({ AZURE_CREDENTIAL: 'workload-identity', AZURE_TENANT_ID: TENANT, AZURE_CLIENT_ID: CLIENT, AZURE_FEDERATED_TOKEN_FILE: tokenFile });
    expect(a.credential).toBeInstanceOf(WorkloadIdentityCredential);
    expect(a.config).toMatchObject({ kind: 'workload-identity', tokenFilePath: tokenFile });
    expect(() => credentialOf({ AZURE_CREDENTIAL: 'workload-identity', AZURE_TENANT_ID: TENANT, AZURE_CLIENT_ID: CLIENT, AZURE_FEDERATED_TOKEN_FILE: join(dir, 'missing') })).toThrow(
      /cannot read .*missing \(ENOENT\)/,
    );
  });

  it('unset: managed identity when a client id is given (as before), else the default chain', () => {
    expect(credentialOf({ ServiceBus__clientId: CLIENT }).credential).toBeInstanceOf(ManagedIdentityCredential);
    expect(credentialOf({}).credential).toBeInstanceOf(DefaultAzureCredential);
    expect(credentialOf({ AZURE_CREDENTIAL: 'default' }).credential).toBeInstanceOf(DefaultAzureCredential);
  });

  it('refuses an unknown kind as a configuration error, and logs the choice without secrets', () => {
    expect(() => credentialOf({ AZURE_CREDENTIAL: 'password' })).toThrow(AgentConfigError);
    expect(() => credentialOf({ AZURE_CREDENTIAL: 'password' })).toThrow(/expected one of managed-identity, arc, certificate, workload-identity, default/);
    const c = loadAgentConfig({ ...base, AZURE_CREDENTIAL: 'certificate', AZURE_TENANT_ID: TENANT, AZURE_CLIENT_ID: CLIENT, AZURE_CLIENT_CERTIFICATE_PATH: pemWithKey }, '/');
    expect(describeConfig(c).transport).toMatchObject({ auth: 'identity', credential: { kind: 'certificate', client_id: CLIENT, certificate: pemWithKey } });
    expect(JSON.stringify(describeConfig(c))).not.toContain('PRIVATE KEY');
  });

  it('applies to the storage-queue transport too', () => {
    const c = loadAgentConfig(
      { ...base, DISPATCH_TRANSPORT: 'storage-queue', LoraStorage__queueServiceUri: 'https://st.queue.core.windows.net', AZURE_CREDENTIAL: 'workload-identity', AZURE_TENANT_ID: TENANT, AZURE_CLIENT_ID: CLIENT, AZURE_FEDERATED_TOKEN_FILE: join(dir, 'federated-token') },
      '/',
    );
    if (c.transport.connection.kind !== 'identity') throw new Error('expected identity');
    expect(buildCredential(c.transport.connection.credential)).toBeInstanceOf(WorkloadIdentityCredential);
  });
});

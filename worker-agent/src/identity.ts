// How the agent logs in to Azure for the dispatch queue (Service Bus, or a Storage queue) when it uses an identity
// instead of a connection string. Chosen by AZURE_CREDENTIAL, never guessed from which other settings happen to be
// set (docs/agent-runbook.md, "Logging in to Azure", shows the systemd wiring of each):
//   managed-identity   an Azure VM's user-assigned managed identity (AZURE_CLIENT_ID)
//   arc                an Azure Arc-enabled server's system-assigned identity (the unit needs the himds group)
//   certificate        a service principal with a certificate (PEM with the private key; systemd LoadCredential)
//   workload-identity  workload identity federation: an external OIDC token in a file, exchanged for an Entra token
//   default            DefaultAzureCredential (development: az login and friends)
// Unset: managed-identity when a client id is set (what earlier versions did), else default.
import { accessSync, constants, existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  ClientCertificateCredential,
  DefaultAzureCredential,
  ManagedIdentityCredential,
  WorkloadIdentityCredential,
  type TokenCredential,
} from '@azure/identity';

/** Setting names (added to AGENT_SETTINGS); the AZURE_* ones are the Azure SDKs' own names for the same things. */
export const IDENTITY_SETTINGS = {
  credential: 'AZURE_CREDENTIAL',
  tenantId: 'AZURE_TENANT_ID',
  clientId: 'AZURE_CLIENT_ID',
  certificatePath: 'AZURE_CLIENT_CERTIFICATE_PATH',
  federatedTokenFile: 'AZURE_FEDERATED_TOKEN_FILE',
  authorityHost: 'AZURE_AUTHORITY_HOST',
} as const;

/** systemd LoadCredential= names read from $CREDENTIALS_DIRECTORY when the path settings are unset. */
export const CERTIFICATE_CREDENTIAL_NAME = 'azure-client-certificate';

export const CREDENTIAL_KINDS = ['managed-identity', 'arc', 'certificate', 'workload-identity', 'default'] as const;
export type CredentialKind = (typeof CREDENTIAL_KINDS)[number];

export type AgentCredentialConfig =
  | { kind: 'managed-identity'; clientId: string }
  | { kind: 'arc'; identityEndpoint?: string; imdsEndpoint?: string }
  | { kind: 'certificate'; tenantId: string; clientId: string; certificatePath: string; authorityHost?: string }
  | { kind: 'workload-identity'; tenantId: string; clientId: string; tokenFilePath: string; authorityHost?: string }
  | { kind: 'default' };

export class AgentIdentityError extends Error {
  override readonly name = 'AgentIdentityError';
}

type Env = Record<string, string | undefined>;
const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** Azure Arc's identity endpoint variables, and the file MSAL falls back to when they are missing. */
const ARC_HIMDS = '/opt/azcmagent/bin/himds';

function guid(env: Env, name: string, why: string): string {
  const v = env[name]?.trim();
  if (!v) throw new AgentIdentityError(`Missing setting ${name} (${why}).`);
  if (!GUID.test(v)) throw new AgentIdentityError(`Invalid setting ${name}: expected a GUID, got ${JSON.stringify(v.slice(0, 60))}.`);
  return v;
}

function readableFile(path: string, setting: string): string {
  try {
    accessSync(path, constants.R_OK);
  } catch (err) {
    throw new AgentIdentityError(`Invalid setting ${setting}: cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}).`);
  }
  return path;
}

/**
 * The identity settings, validated. `transportClientId` is the client id given with the transport settings
 * (ServiceBus__clientId / LoraStorage__clientId), used when AZURE_CLIENT_ID is unset.
 */
export function readAgentCredential(env: Env, transportClientId?: string): AgentCredentialConfig {
  const S = IDENTITY_SETTINGS;
  const raw = env[S.credential]?.trim();
  const clientIdSet = env[S.clientId]?.trim() || transportClientId;
  const kind = (raw || (clientIdSet ? 'managed-identity' : 'default')) as CredentialKind;
  if (!CREDENTIAL_KINDS.includes(kind)) {
    throw new AgentIdentityError(`Invalid setting ${S.credential}=${JSON.stringify(raw)}: expected one of ${CREDENTIAL_KINDS.join(', ')}.`);
  }
  const withClientId = (e: Env): Env => ({ ...e, [S.clientId]: e[S.clientId]?.trim() || transportClientId });
  const authorityHost = env[S.authorityHost]?.trim() || undefined;
  if (authorityHost && !/^https:\/\//.test(authorityHost)) throw new AgentIdentityError(`Invalid setting ${S.authorityHost}: must be an https URL.`);
  const credDir = env.CREDENTIALS_DIRECTORY?.trim();

  switch (kind) {
    case 'managed-identity':
      return { kind, clientId: guid(withClientId(env), S.clientId, "the client id of the VM's user-assigned managed identity") };
    case 'arc': {
      // Arc offers only the machine's system-assigned identity: a client id would be refused by HIMDS.
      if (clientIdSet) {
        throw new AgentIdentityError(`${S.credential}=arc uses the server's system-assigned identity: unset ${S.clientId} (and ServiceBus__clientId / LoraStorage__clientId).`);
      }
      const viaEnv = Boolean(env.IDENTITY_ENDPOINT?.trim() && env.IMDS_ENDPOINT?.trim());
      if (!viaEnv && !existsSync(ARC_HIMDS)) {
        throw new AgentIdentityError(
          `${S.credential}=arc but this is not an Azure Arc-enabled server: IDENTITY_ENDPOINT/IMDS_ENDPOINT are unset and ${ARC_HIMDS} is missing (install and connect azcmagent).`,
        );
      }
      return { kind, identityEndpoint: env.IDENTITY_ENDPOINT?.trim() || undefined, imdsEndpoint: env.IMDS_ENDPOINT?.trim() || undefined };
    }
    case 'certificate': {
      const configured = env[S.certificatePath]?.trim();
      const fromCred = credDir ? join(credDir, CERTIFICATE_CREDENTIAL_NAME) : undefined;
      const path = configured || (fromCred && existsSync(fromCred) ? fromCred : undefined);
      if (!path) {
        throw new AgentIdentityError(
          `Missing setting ${S.certificatePath} (PEM with the certificate and its private key), or systemd LoadCredential=${CERTIFICATE_CREDENTIAL_NAME}:/etc/lora-router/credentials/azure-client.pem.`,
        );
      }
      readableFile(path, configured ? S.certificatePath : `$CREDENTIALS_DIRECTORY/${CERTIFICATE_CREDENTIAL_NAME}`);
      if (!/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(readFileSync(path, 'utf8'))) {
        throw new AgentIdentityError(`Invalid setting ${S.certificatePath}: ${path} holds no PEM private key (it needs the certificate and its key).`);
      }
      const e = withClientId(env);
      return {
        kind,
        tenantId: guid(e, S.tenantId, 'Entra tenant of the service principal'),
        clientId: guid(e, S.clientId, "the service principal's application (client) id"),
        certificatePath: path,
        authorityHost,
      };
    }
    case 'workload-identity': {
      const path = env[S.federatedTokenFile]?.trim();
      if (!path) {
        throw new AgentIdentityError(
          `Missing setting ${S.federatedTokenFile} (the file your identity provider keeps a fresh OIDC token in; not a LoadCredential copy, which would go stale).`,
        );
      }
      readableFile(path, S.federatedTokenFile);
      const e = withClientId(env);
      return {
        kind,
        tenantId: guid(e, S.tenantId, 'Entra tenant of the app registration or managed identity with the federated credential'),
        clientId: guid(e, S.clientId, 'client id of the app registration or user-assigned identity that trusts the token issuer'),
        tokenFilePath: path,
        authorityHost,
      };
    }
    case 'default':
      return { kind };
  }
}

/** The @azure/identity credential for a validated configuration. No network until the first token request. */
export function buildCredential(c: AgentCredentialConfig): TokenCredential {
  switch (c.kind) {
    case 'managed-identity':
      return new ManagedIdentityCredential({ clientId: c.clientId });
    case 'arc':
      // MSAL finds HIMDS through these process variables (azcmagent sets them for systemd units); an --env-file
      // may carry them instead.
      if (c.identityEndpoint) process.env.IDENTITY_ENDPOINT ??= c.identityEndpoint;
      if (c.imdsEndpoint) process.env.IMDS_ENDPOINT ??= c.imdsEndpoint;
      return new ManagedIdentityCredential();
    case 'certificate':
      return new ClientCertificateCredential(c.tenantId, c.clientId, { certificatePath: c.certificatePath }, { authorityHost: c.authorityHost });
    case 'workload-identity':
      return new WorkloadIdentityCredential({ tenantId: c.tenantId, clientId: c.clientId, tokenFilePath: c.tokenFilePath, authorityHost: c.authorityHost });
    case 'default':
      return new DefaultAzureCredential();
  }
}

/** For the startup log: the kind and ids, never a secret. */
export function describeCredential(c: AgentCredentialConfig): Record<string, string> {
  switch (c.kind) {
    case 'managed-identity':
      return { kind: c.kind, client_id: c.clientId };
    case 'certificate':
      return { kind: c.kind, tenant_id: c.tenantId, client_id: c.clientId, certificate: c.certificatePath };
    case 'workload-identity':
      return { kind: c.kind, tenant_id: c.tenantId, client_id: c.clientId, token_file: c.tokenFilePath };
    default:
      return { kind: c.kind };
  }
}

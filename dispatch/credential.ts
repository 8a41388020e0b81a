// The one Azure credential factory, for the Functions app's SDK clients and the agent's dispatch receiver alike: a
// user-assigned managed identity when a client id is given, else the default chain (az login, VM identity...).
// Credentials are cached per client id, so every client of a process shares one token cache.
import { DefaultAzureCredential, ManagedIdentityCredential, type TokenCredential } from '@azure/identity';

/** Identity for Azure: a token credential, or a user-assigned identity's client id (else the default chain). */
export type IdentityOptions = { credential?: TokenCredential; clientId?: string };

const credentials = new Map<string, TokenCredential>();

/** The process-wide credential for a user-assigned identity's client id (none = the default chain). */
export function getCredential(clientId?: string): TokenCredential {
  const key = clientId ?? '';
  let credential = credentials.get(key);
  if (!credential) {
    credential = clientId ? new ManagedIdentityCredential({ clientId }) : new DefaultAzureCredential();
    credentials.set(key, credential);
  }
  return credential;
}

/** The given credential, else the one for its client id. */
export function credentialFor(o: IdentityOptions): TokenCredential {
  return o.credential ?? getCredential(o.clientId);
}

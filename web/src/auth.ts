// Sign-in. The app asks the server which kind (/api/app/config.json):
// - local: a dev token (`npx lora-router dev-token alice`), taken from the URL (#token=…, as `npm start` prints it) or
//   pasted into the sign-in form, kept in sessionStorage for this tab only;
// - entra: MSAL for the browser (loaded only then, so local pages stay small), redirect flow, tokens for the API's
//   own audience so the API sees the same app roles as from the CLI.
import type { WebClientConfig } from '../../contract/me.js';
import { ApiError, networkError } from './api.js';

const TOKEN_KEY = 'lora-router.token';

export interface Session {
  token(): Promise<string>;
  signOut(): Promise<void>;
  kind: 'local' | 'entra';
}

export async function loadClientConfig(): Promise<WebClientConfig> {
  let res: Response;
  try {
    res = await fetch(`${import.meta.env.BASE_URL}config.json`, { cache: 'no-cache' });
  } catch (err) {
    throw networkError(err);
  }
  if (!res.ok) throw new ApiError(res.status, 'config', `Could not load the app settings (HTTP ${res.status}).`);
  return (await res.json()) as WebClientConfig;
}

/** Moves a `#token=…` from the address bar into sessionStorage, so it is not left in history or bookmarks. */
export function takeTokenFromUrl(): void {
  const m = /(?:^#|&)token=([A-Za-z0-9._~+/=-]+)/.exec(location.hash);
  if (!m) return;
  sessionStorage.setItem(TOKEN_KEY, m[1]!);
  history.replaceState(null, '', `${location.pathname}${location.search}#/loras`);
}

export function localSession(): Session | null {
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (!token) return null;
  return {
    kind: 'local',
    token: async () => token,
    signOut: async () => sessionStorage.removeItem(TOKEN_KEY),
  };
}

export function saveLocalToken(token: string): void {
  sessionStorage.setItem(TOKEN_KEY, token.trim());
}

/** Resolves with a session, or null after starting a redirect to the sign-in page. */
export async function entraSession(cfg: Extract<WebClientConfig, { auth: 'entra' }>, interactive: boolean): Promise<Session | null> {
  const { PublicClientApplication, InteractionRequiredAuthError } = await import('@azure/msal-browser');
  const redirectUri = new URL(import.meta.env.BASE_URL, location.origin).href;
  const pca = new PublicClientApplication({
    auth: { clientId: cfg.client_id, authority: cfg.authority, redirectUri, postLogoutRedirectUri: redirectUri },
    cache: { cacheLocation: 'sessionStorage' },
  });
  await pca.initialize();
  const redirect = await pca.handleRedirectPromise();
  const account = redirect?.account ?? pca.getAllAccounts()[0];
  if (!account) {
    if (interactive) await pca.loginRedirect({ scopes: cfg.scopes });
    return null;
  }
  pca.setActiveAccount(account);
  return {
    kind: 'entra',
    token: async () => {
      try {
        return (await pca.acquireTokenSilent({ scopes: cfg.scopes, account })).accessToken;
      } catch (err) {
        if (err instanceof InteractionRequiredAuthError) await pca.acquireTokenRedirect({ scopes: cfg.scopes, account });
        throw new ApiError(401, 'unauthorized', 'Your sign-in has expired. Redirecting to sign in…');
      }
    },
    signOut: () => pca.logoutRedirect({ account }),
  };
}

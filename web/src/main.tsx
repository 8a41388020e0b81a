import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import type { Me } from '../../contract/me.js';
import { Api, ApiError } from './api.js';
import { entraSession, loadClientConfig, localSession, saveLocalToken, takeTokenFromUrl, type Session } from './auth.js';
import { ErrorNote } from './components.js';
import type { FleetPage as FleetPageType } from './pages/Fleet.js';
import { JobPage } from './pages/JobPage.js';
import { JobsPage } from './pages/Jobs.js';
import { LorasPage } from './pages/Loras.js';
import './styles.css';

type Route = { page: 'loras' } | { page: 'jobs' } | { page: 'job'; id: string } | { page: 'fleet' };

function parseRoute(hash: string): Route {
  const path = hash.replace(/^#\/?/, '').split('?')[0]!;
  const job = /^jobs\/([^/?#]+)$/.exec(path);
  if (job) return { page: 'job', id: decodeURIComponent(job[1]!) };
  if (path === 'jobs') return { page: 'jobs' };
  if (path === 'fleet') return { page: 'fleet' };
  return { page: 'loras' };
}

function useRoute(): Route {
  const [route, setRoute] = useState(() => parseRoute(location.hash));
  useEffect(() => {
    const on = () => setRoute(parseRoute(location.hash));
    addEventListener('hashchange', on);
    return () => removeEventListener('hashchange', on);
  }, []);
  return route;
}

/** The dashboard and Chart.js load only when an admin opens it: users' pages stay small. */
function LazyFleet({ api }: { api: Api }) {
  const [Page, setPage] = useState<typeof FleetPageType | null>(null);
  const [error, setError] = useState<string | undefined>();
  useEffect(() => {
    import('./pages/Fleet.js')
      .then((m) => setPage(() => m.FleetPage))
      .catch(() => setError('Could not load the dashboard. Reload the page to try again.'));
  }, []);
  if (error) return <ErrorNote message={error} />;
  return Page ? <Page api={api} /> : <p role="status">Loading the fleet…</p>;
}

function SignIn({ onToken, error }: { onToken: (t: string) => void; error?: string }) {
  const [token, setToken] = useState('');
  return (
    <main class="signin">
      <h1>lora-router</h1>
      <form
        onSubmit={(e) => {
          e.preventDefault();
          if (token.trim()) onToken(token.trim());
        }}
      >
        <label for="token">Dev token</label>
        <textarea id="token" rows={4} value={token} onInput={(e) => setToken((e.target as HTMLTextAreaElement).value)} placeholder="eyJhbGciOi…" required />
        <p class="hint">
          Local stack: run <code>npx lora-router dev-token alice</code> (add <code>--role admin</code> for the fleet dashboard), or open the link
          <code>npm start</code> prints.
        </p>
        {error && <ErrorNote message={error} />}
        <button type="submit">Sign in</button>
      </form>
    </main>
  );
}

function App() {
  const route = useRoute();
  const [session, setSession] = useState<Session | null | undefined>(undefined);
  const [me, setMe] = useState<Me | null>(null);
  const [fatal, setFatal] = useState<string | undefined>();
  const [signInError, setSignInError] = useState<string | undefined>();
  const [kind, setKind] = useState<'local' | 'entra'>('local');

  useEffect(() => {
    (async () => {
      takeTokenFromUrl();
      const cfg = await loadClientConfig();
      setKind(cfg.auth);
      setSession(cfg.auth === 'local' ? localSession() : await entraSession(cfg, true));
    })().catch((err: Error) => setFatal(err.message));
  }, []);

  const api = session ? new Api(session.token) : null;

  useEffect(() => {
    if (!api) return;
    api
      .get<Me>('me')
      .then(setMe)
      .catch(async (err: ApiError) => {
        if (err.status === 401 && session?.kind === 'local') {
          await session.signOut();
          setSession(null);
          setSignInError(err.message);
        } else setFatal(err.message);
      });
  }, [session]);

  if (fatal) return <main class="signin"><h1>lora-router</h1><ErrorNote message={fatal} /></main>;
  if (session === undefined) return <p class="loading" role="status">Loading…</p>;
  if (session === null) {
    if (kind === 'entra') return <p class="loading" role="status">Redirecting to sign in…</p>;
    return <SignIn error={signInError} onToken={(t) => { saveLocalToken(t); setSignInError(undefined); setSession(localSession()); }} />;
  }
  if (!me || !api) return <p class="loading" role="status">Signing in…</p>;

  const link = (href: string, label: string, active: boolean) => (
    <a href={href} aria-current={active ? 'page' : undefined}>{label}</a>
  );
  return (
    <>
      <header class="top">
        <span class="brand">lora-router</span>
        <nav aria-label="Main">
          {link('#/loras', 'My LoRAs', route.page === 'loras')}
          {link('#/jobs', 'My jobs', route.page === 'jobs' || route.page === 'job')}
          {me.role === 'admin' && link('#/fleet', 'Fleet', route.page === 'fleet')}
        </nav>
        <span class="who">
          <span title={`role: ${me.role}`}>{me.subject}</span>
          <button class="link" type="button" onClick={async () => { await session.signOut(); setMe(null); setSession(null); }}>Sign out</button>
        </span>
      </header>
      <main id="main">
        {route.page === 'loras' && <LorasPage api={api} me={me} onQuotaChange={() => api.get<Me>('me').then(setMe).catch(() => {})} />}
        {route.page === 'jobs' && <JobsPage api={api} />}
        {route.page === 'job' && <JobPage api={api} id={route.id} />}
        {route.page === 'fleet' && (me.role === 'admin' ? <LazyFleet api={api} /> : <ErrorNote message="The fleet dashboard is for admins." />)}
      </main>
    </>
  );
}

render(<App />, document.getElementById('root')!);

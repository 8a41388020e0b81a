// My jobs: submit one (pick LoRAs, optional payload) and the list of recent jobs, each linking to its live page.
import { useEffect, useState } from 'preact/hooks';
import type { JobView, LoraRequirement } from '../../../contract/jobs.js';
import { allUserLoras } from '../../../contract/loras-paging.js';
import type { SharedLora, UserLora, UserLoraList } from '../../../contract/loras.js';
import type { Api } from '../api.js';
import { Badge, ErrorNote, usePoll } from '../components.js';
import { ago, isTerminalJob, JOB_STATUS_WORDS } from '../format.js';
import { MAX_LORAS_PER_JOB } from '../limits.js';

const preselected = () => new URLSearchParams(location.hash.split('?')[1] ?? '').get('lora');

export function JobsPage({ api }: { api: Api }) {
  const [jobs, setJobs] = useState<JobView[] | null>(null);
  const [mine, setMine] = useState<UserLora[]>([]);
  const [shared, setShared] = useState<SharedLora[]>([]);
  const [picked, setPicked] = useState<string[]>(() => {
    const id = preselected();
    return id ? [`user:${id}`] : [];
  });
  const [service, setService] = useState('image-gen');
  const [pool, setPool] = useState('standard');
  const [priority, setPriority] = useState(5);
  const [payload, setPayload] = useState('{}');
  const [error, setError] = useState<string | undefined>();
  const [busy, setBusy] = useState(false);

  const refresh = async () => {
    try {
      setJobs((await api.get<{ jobs: JobView[] }>('jobs')).jobs);
    } catch (err) {
      setError((err as Error).message);
    }
  };
  useEffect(() => {
    void refresh();
    Promise.all([allUserLoras((path) => api.get<UserLoraList>(path)).then((loras) => ({ loras })), api.get<{ loras: SharedLora[] }>('shared-loras')])
      .then(([m, s]) => {
        setMine(m.loras.filter((l) => l.status === 'ready'));
        setShared(s.loras.filter((l) => l.status === 'ready'));
      })
      .catch((err: Error) => setError(err.message));
  }, []);
  usePoll(refresh, 2000, (jobs ?? []).some((j) => !isTerminalJob(j.status)));

  const toggle = (key: string, on: boolean) => setPicked((p) => (on ? [...p, key] : p.filter((k) => k !== key)));

  const submit = async (e: Event) => {
    e.preventDefault();
    setError(undefined);
    let body: Record<string, unknown>;
    try {
      body = JSON.parse(payload || '{}') as Record<string, unknown>;
      if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new Error();
    } catch {
      setError('The payload must be a JSON object, for example {"steps": 20}.');
      return;
    }
    const loras: LoraRequirement[] = picked.map((k) => {
      const [kind, id] = [k.slice(0, k.indexOf(':')), k.slice(k.indexOf(':') + 1)];
      return kind === 'user' ? { type: 'user', flat_file_id: id } : { type: 'shared', filename: id };
    });
    setBusy(true);
    try {
      const r = await api.post<{ job_id: string }>('jobs', { service_required: service, pool, priority, payload: body, requirements: { loras } });
      location.hash = `#/jobs/${r.job_id}`;
    } catch (err) {
      setError((err as Error).message);
    } finally {
      setBusy(false);
    }
  };

  return (
    <section aria-labelledby="jobs-title">
      <h1 id="jobs-title">My jobs</h1>
      <form class="panel" onSubmit={submit} aria-labelledby="submit-title">
        <h2 id="submit-title">New job</h2>
        <fieldset>
          <legend>LoRAs ({picked.length} of at most {MAX_LORAS_PER_JOB})</legend>
          {mine.length + shared.length === 0 && <p class="empty">No ready LoRAs yet: upload one under My LoRAs.</p>}
          <div class="picker">
            {mine.map((l) => (
              <label key={l.flat_file_id} class="check">
                <input type="checkbox" checked={picked.includes(`user:${l.flat_file_id}`)} disabled={!picked.includes(`user:${l.flat_file_id}`) && picked.length >= MAX_LORAS_PER_JOB} onChange={(e) => toggle(`user:${l.flat_file_id}`, (e.target as HTMLInputElement).checked)} />
                {l.original_name}
              </label>
            ))}
            {shared.map((l) => (
              <label key={l.filename} class="check">
                <input type="checkbox" checked={picked.includes(`shared:${l.filename}`)} disabled={!picked.includes(`shared:${l.filename}`) && picked.length >= MAX_LORAS_PER_JOB} onChange={(e) => toggle(`shared:${l.filename}`, (e.target as HTMLInputElement).checked)} />
                {l.filename} <Badge kind="shared">shared</Badge>
              </label>
            ))}
          </div>
        </fieldset>
        <div class="row">
          <label>Service<input value={service} onInput={(e) => setService((e.target as HTMLInputElement).value)} required pattern="[A-Za-z0-9._\-]+" /></label>
          <label>Pool<input value={pool} onInput={(e) => setPool((e.target as HTMLInputElement).value)} required /></label>
          <label>Priority<input type="number" min={0} max={9} value={priority} onInput={(e) => setPriority(Number((e.target as HTMLInputElement).value))} /></label>
        </div>
        <label>
          Payload (JSON, passed to the job)
          <textarea rows={3} value={payload} onInput={(e) => setPayload((e.target as HTMLTextAreaElement).value)} spellcheck={false} class="mono" />
        </label>
        {error && <ErrorNote message={error} onDismiss={() => setError(undefined)} />}
        <button type="submit" disabled={busy}>{busy ? 'Submitting…' : 'Submit job'}</button>
      </form>

      <h2>Recent jobs</h2>
      {jobs === null ? (
        <p role="status">Loading your jobs…</p>
      ) : jobs.length === 0 ? (
        <p class="empty">No jobs yet.</p>
      ) : (
        <table class="table">
          <caption class="visually-hidden">Your jobs, newest first</caption>
          <thead><tr><th scope="col">Job</th><th scope="col">Status</th><th scope="col">Machine</th><th scope="col">LoRAs</th><th scope="col">Created</th></tr></thead>
          <tbody>
            {jobs.map((j) => (
              <tr key={j.job_id}>
                <td data-label="Job"><a href={`#/jobs/${j.job_id}`}><code>{j.job_id}</code></a></td>
                <td data-label="Status"><Badge kind={j.status}>{JOB_STATUS_WORDS[j.status]}</Badge></td>
                <td data-label="Machine">{j.machine_id ?? '—'}</td>
                <td data-label="LoRAs">{j.requirements.loras.length}</td>
                <td data-label="Created">{ago(j.created_at)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

// One job, live: status and placement (machine, score and its parts, cache hit/miss per LoRA) from the job view,
// log lines and progress from the event stream, cancel and retry, and the job's outputs when the API lists them.
import { useEffect, useRef, useState } from 'preact/hooks';
import { describeOverflow } from '../../../contract/job-overflow.js';
import type { JobEvent, JobView } from '../../../contract/jobs.js';
import type { JobOutputList } from '../../../contract/outputs.js';
import { ApiError, type Api } from '../api.js';
import { Badge, ErrorNote } from '../components.js';
import { ago, isTerminalJob, JOB_STATUS_WORDS } from '../format.js';


interface LogLine {
  key: string;
  text: string;
  kind: 'stdout' | 'stderr' | 'agent' | 'event';
}

const MAX_LINES = 2000;

function linesOf(e: JobEvent): LogLine[] {
  const d = e.data as Record<string, unknown>;
  if (e.type === 'log' && Array.isArray(d.lines)) {
    const stream = (d.stream as LogLine['kind']) ?? 'stdout';
    return (d.lines as string[]).map((text, i) => ({ key: `${e.seq}.${i}`, text, kind: stream }));
  }
  let text = `${e.type}`;
  if (e.type === 'progress') text = `progress ${Math.round(Number(d.progress ?? 0) * 100)}%${d.message ? ` — ${String(d.message)}` : ''}`;
  else if (e.type === 'failed') text = `failed: ${String(d.reason ?? 'no reason given')}`;
  else if (e.machine_id) text = `${e.type} on ${e.machine_id} (attempt ${e.attempt})`;
  return [{ key: String(e.seq), text: `— ${text}`, kind: 'event' }];
}

export function JobPage({ api, id }: { api: Api; id: string }) {
  const [job, setJob] = useState<JobView | null>(null);
  const [notFound, setNotFound] = useState(false);
  const [error, setError] = useState<string | undefined>();
  const [lines, setLines] = useState<LogLine[]>([]);
  const [progress, setProgress] = useState<number | null>(null);
  const [streamState, setStreamState] = useState<'connecting' | 'live' | 'ended' | 'failed'>('connecting');
  const [epochKey, setEpochKey] = useState(0); // bumps after a retry to restart the stream
  const logRef = useRef<HTMLPreElement>(null);
  const [outputs, setOutputs] = useState<JobOutputList['outputs']>([]);
  const recorded = job?.outputs?.length ?? 0;

  // The job view lists outputs without URLs; the owner's short-lived read URLs come from /jobs/{id}/outputs.
  useEffect(() => {
    if (recorded === 0) return setOutputs([]);
    api
      .get<JobOutputList>(`jobs/${encodeURIComponent(id)}/outputs`)
      .then((list) => setOutputs(list.outputs))
      .catch((err: ApiError) => setError(`Outputs: ${err.message}`));
  }, [id, recorded]);

  useEffect(() => {
    setJob(null);
    setNotFound(false);
    api
      .get<JobView>(`jobs/${encodeURIComponent(id)}`)
      .then(setJob)
      .catch((err: ApiError) => (err.status === 404 ? setNotFound(true) : setError(err.message)));
  }, [id]);

  useEffect(() => {
    if (notFound) return;
    const ctl = new AbortController();
    setLines([]);
    setStreamState('connecting');
    api
      .stream(
        `jobs/${encodeURIComponent(id)}/events`,
        (m) => {
          setStreamState('live');
          const data = JSON.parse(m.data) as unknown;
          if (m.event === 'status') setJob(data as JobView);
          else if (m.event === 'end') {
            setStreamState('ended');
            void api.get<JobView>(`jobs/${encodeURIComponent(id)}`).then(setJob).catch(() => {});
          } else if (m.event === 'error') setError((data as { message?: string }).message ?? 'The event stream failed.');
          else if (m.event !== 'timeout') {
            const e = data as JobEvent;
            if (e.type === 'progress') setProgress(Number((e.data as { progress?: number }).progress ?? 0));
            if (e.type === 'succeeded') setProgress(1);
            setLines((ls) => [...ls, ...linesOf(e)].slice(-MAX_LINES));
          }
        },
        ctl.signal,
      )
      .then(() => !ctl.signal.aborted && setStreamState('ended'))
      .catch((err: ApiError) => {
        if (ctl.signal.aborted) return;
        if (err.status === 404) setNotFound(true);
        else {
          setStreamState('failed');
          setError(`Live logs stopped: ${err.message}`);
        }
      });
    return () => ctl.abort();
  }, [id, epochKey, notFound]);

  useEffect(() => {
    const el = logRef.current;
    if (el) el.scrollTop = el.scrollHeight;
  }, [lines]);

  if (notFound) {
    return (
      <section aria-labelledby="job-title">
        <h1 id="job-title">Job not found</h1>
        <ErrorNote message={`There is no job ${id} in your account. It may belong to someone else, or the link is wrong.`} />
        <p><a href="#/jobs">Back to my jobs</a></p>
      </section>
    );
  }
  if (!job) return error ? <ErrorNote message={error} /> : <p role="status">Loading the job…</p>;

  const act = async (what: 'cancel' | 'retry') => {
    setError(undefined);
    try {
      await api.post(`jobs/${job.job_id}/${what}`);
      setJob(await api.get<JobView>(`jobs/${job.job_id}`));
      if (what === 'retry') {
        setProgress(null);
        setEpochKey((k) => k + 1);
      }
    } catch (err) {
      setError((err as Error).message);
    }
  };

  const breakdown = Object.entries(job.score_breakdown ?? {});
  const hit = new Set(job.cache.hit_loras);
  const missing = new Set(job.cache.missing_loras);
  const loraKey = (l: JobView['requirements']['loras'][number]) => (l.type === 'user' ? l.flat_file_id : l.filename);

  return (
    <section aria-labelledby="job-title">
      <p><a href="#/jobs">← My jobs</a></p>
      <h1 id="job-title"><code>{job.job_id}</code></h1>
      <div class="status-line" aria-live="polite">
        <Badge kind={job.status}>{JOB_STATUS_WORDS[job.status]}</Badge>
        {progress !== null && !isTerminalJob(job.status) && <progress max={1} value={progress} aria-label="Job progress" />}
        {job.error && <span class="reason">{job.error}</span>}
      </div>
      <div class="actions">
        {!isTerminalJob(job.status) && <button type="button" class="danger" onClick={() => void act('cancel')}>Cancel job</button>}
        {(job.status === 'failed' || job.status === 'cancelled') && <button type="button" onClick={() => void act('retry')}>Retry</button>}
      </div>
      {error && <ErrorNote message={error} onDismiss={() => setError(undefined)} />}

      <div class="grid2">
        <div class="panel">
          <h2>Placement</h2>
          <dl class="facts">
            <dt>Machine</dt><dd>{job.machine_id ?? 'not placed yet'}</dd>
            <dt>Pool</dt><dd>{job.pool}{job.overflow && <> ({describeOverflow(job.overflow)})</>}</dd>
            <dt>Policy</dt><dd>{job.policy ?? '—'}</dd>
            <dt>Score</dt><dd>{job.affinity_score === null ? '—' : job.affinity_score.toFixed(3)}</dd>
            <dt>Attempt</dt><dd>{job.attempt}</dd>
            <dt>Created</dt><dd>{ago(job.created_at)}</dd>
            <dt title="The machine took the job (its slot is held from here); its LoRAs are fetched next">Claimed</dt><dd>{job.claimed_at ? ago(job.claimed_at) : '—'}</dd>
            <dt title="The run began: the machine reported its LoRAs ready">Started</dt><dd>{job.started_at ? ago(job.started_at) : '—'}</dd>
            <dt>Finished</dt><dd>{job.finished_at ? ago(job.finished_at) : '—'}</dd>
          </dl>
          {breakdown.length > 0 && (
            <table class="table compact">
              <caption>Score breakdown</caption>
              <tbody>{breakdown.map(([k, v]) => <tr key={k}><th scope="row">{k}</th><td>{v.toFixed(3)}</td></tr>)}</tbody>
            </table>
          )}
        </div>
        <div class="panel">
          <h2>LoRAs and cache</h2>
          {job.requirements.loras.length === 0 ? (
            <p class="empty">This job uses no LoRAs.</p>
          ) : (
            <ul class="plain">
              {job.requirements.loras.map((l) => {
                const k = loraKey(l);
                const state = hit.has(k) ? 'hit' : missing.has(k) ? 'miss' : 'unknown';
                return (
                  <li key={k}>
                    <code>{k}</code> {l.type === 'shared' && <Badge kind="shared">shared</Badge>}{' '}
                    <Badge kind={`cache-${state}`}>{state === 'hit' ? 'cache hit' : state === 'miss' ? 'downloaded (miss)' : 'not started'}</Badge>
                  </li>
                );
              })}
            </ul>
          )}
        </div>
      </div>

      <div class="panel">
        <h2>
          Logs <span class="hint">{streamState === 'live' ? '● live' : streamState === 'connecting' ? 'connecting…' : streamState === 'ended' ? 'complete' : 'stopped'}</span>
        </h2>
        <pre class="logs" ref={logRef} tabIndex={0} aria-label="Job log" aria-live="off" data-testid="job-logs">
          {lines.length === 0 ? <span class="muted">No log lines yet.</span> : lines.map((l) => <span key={l.key} class={`log-${l.kind}`}>{l.text}{'\n'}</span>)}
        </pre>
      </div>

      {(outputs.length > 0 || job.result !== null) && (
        <div class="panel">
          <h2>Output</h2>
          {outputs.length > 0 && (
            <ul class="outputs">
              {outputs.map((o) => (
                <li key={o.name}>
                  {o.content_type.startsWith('image/') ? <img src={o.url} alt={o.name} loading="lazy" /> : null}
                  <a href={o.url} download={o.name}>{o.name}</a>
                </li>
              ))}
            </ul>
          )}
          {job.result !== null && <pre class="mono result">{JSON.stringify(job.result, null, 2)}</pre>}
        </div>
      )}
    </section>
  );
}

// My LoRAs: drag-and-drop (or pick) .safetensors files, watch them upload and get checked, see quota, delete.
import { useEffect, useState } from 'preact/hooks';
import { allUserLoras } from '../../../contract/loras-paging.js';
import type { SharedLora, UserLora, UserLoraList } from '../../../contract/loras.js';
import type { Me } from '../../../contract/me.js';
import type { Api } from '../api.js';
import { Badge, ConfirmDialog, ErrorNote, Meter, usePoll } from '../components.js';
import { ago, bytes, LORA_STATUS_WORDS, shortSha } from '../format.js';
import { uploadFile, type Flow } from '../upload.js';

interface Upload {
  key: string;
  name: string;
  sent: number;
  total: number;
  phase: 'uploading' | 'validating' | 'done' | 'failed';
  flow?: Flow;
  error?: string;
}

export function LorasPage({ api, me, onQuotaChange }: { api: Api; me: Me; onQuotaChange: () => void }) {
  const [loras, setLoras] = useState<UserLora[] | null>(null);
  const [shared, setShared] = useState<SharedLora[]>([]);
  const [uploads, setUploads] = useState<Upload[]>([]);
  const [error, setError] = useState<string | undefined>();
  const [dragging, setDragging] = useState(false);
  const [toDelete, setToDelete] = useState<UserLora | null>(null);

  const refresh = async () => {
    try {
      const [mine, sys] = await Promise.all([allUserLoras((path) => api.get<UserLoraList>(path)).then((loras) => ({ loras })), api.get<{ loras: SharedLora[] }>('shared-loras')]);
      setLoras(mine.loras);
      setShared(sys.loras);
    } catch (err) {
      setError((err as Error).message);
    }
  };
  useEffect(() => void refresh(), []);
  const pending = (loras ?? []).some((l) => l.status === 'uploading' || l.status === 'validating');
  usePoll(async () => {
    await refresh();
    onQuotaChange();
  }, 1000, pending);

  const patch = (key: string, p: Partial<Upload>) => setUploads((us) => us.map((u) => (u.key === key ? { ...u, ...p } : u)));

  const start = async (files: File[]) => {
    for (const file of files) {
      const key = `${file.name}-${file.size}-${Math.random()}`;
      setUploads((us) => [{ key, name: file.name, sent: 0, total: file.size, phase: 'uploading' }, ...us]);
      try {
        const r = await uploadFile(api, file, (sent, total) => patch(key, { sent, total }), new AbortController().signal);
        patch(key, { phase: r.status === 'ready' || r.status === 'rejected' ? 'done' : 'validating', flow: r.flow, sent: file.size });
      } catch (err) {
        patch(key, { phase: 'failed', error: (err as Error).message });
      }
      await refresh();
      onQuotaChange();
    }
  };

  const remove = async (l: UserLora) => {
    setToDelete(null);
    try {
      await api.delete(`user-loras/${l.flat_file_id}`);
    } catch (err) {
      setError((err as Error).message);
    }
    await refresh();
    onQuotaChange();
  };

  const q = me.quota;
  const visibleUploads = uploads.filter((u) => u.phase === 'uploading' || u.phase === 'failed');
  return (
    <section aria-labelledby="loras-title">
      <h1 id="loras-title">My LoRAs</h1>
      <div class="quota">
        <Meter label="LoRAs" value={q.used_loras} max={q.max_loras} text={`${q.used_loras} of ${q.max_loras}`} />
        <Meter label="Storage" value={q.used_bytes} max={q.max_bytes} text={`${bytes(q.used_bytes)} of ${bytes(q.max_bytes)}`} />
      </div>

      <label
        class={dragging ? 'drop dragging' : 'drop'}
        onDragOver={(e) => {
          e.preventDefault();
          setDragging(true);
        }}
        onDragLeave={() => setDragging(false)}
        onDrop={(e) => {
          e.preventDefault();
          setDragging(false);
          void start([...(e.dataTransfer?.files ?? [])]);
        }}
      >
        <input
          type="file"
          accept=".safetensors"
          multiple
          class="visually-hidden"
          aria-describedby="drop-hint"
          onChange={(e) => {
            const input = e.target as HTMLInputElement;
            void start([...(input.files ?? [])]);
            input.value = '';
          }}
        />
        <strong>Drop .safetensors files here</strong> or <span class="fake-link">choose files</span>
        <span id="drop-hint" class="hint">Up to 100 MB goes through the API; larger files go straight to storage.</span>
      </label>

      {visibleUploads.length > 0 && (
        <ul class="uploads" aria-label="Uploads in progress">
          {visibleUploads.map((u) => (
            <li key={u.key}>
              <div class="meter-label">
                <span>{u.name}</span>
                <span>{u.phase === 'failed' ? 'Failed' : `${bytes(u.sent)} of ${bytes(u.total)}`}</span>
              </div>
              {u.phase === 'failed' ? (
                <ErrorNote message={u.error ?? 'Upload failed.'} onDismiss={() => setUploads((us) => us.filter((x) => x.key !== u.key))} />
              ) : (
                <progress max={u.total} value={u.sent} aria-label={`Uploading ${u.name}`} />
              )}
            </li>
          ))}
        </ul>
      )}

      {error && <ErrorNote message={error} onDismiss={() => setError(undefined)} />}

      {loras === null ? (
        <p role="status">Loading your LoRAs…</p>
      ) : loras.length === 0 ? (
        <p class="empty">No LoRAs yet. Drop a .safetensors file above.</p>
      ) : (
        <ul class="cards" aria-label="Your LoRAs" data-testid="lora-list">
          {loras.map((l) => (
            <li key={l.id} class="card" data-lora-id={l.flat_file_id} data-status={l.status}>
              <div class="card-head">
                <strong class="name">{l.original_name}</strong>
                <Badge kind={l.status}>{LORA_STATUS_WORDS[l.status]}</Badge>
              </div>
              {l.status === 'rejected' && <p class="reason">Rejected: {l.reject_reason ?? 'the file is not a valid LoRA.'}</p>}
              <dl class="facts">
                <dt>Size</dt><dd>{bytes(l.size_bytes)}</dd>
                <dt>sha256</dt><dd><code title={l.sha256 ?? ''}>{shortSha(l.sha256)}</code></dd>
                <dt>Id</dt><dd><code>{l.flat_file_id}</code></dd>
                <dt>Added</dt><dd>{ago(l.created_at)}</dd>
              </dl>
              <div class="actions">
                {l.status === 'ready' && <a class="button" href={`#/jobs?lora=${l.flat_file_id}`}>Use in a job</a>}
                <button type="button" class="danger" onClick={() => setToDelete(l)} aria-label={`Delete ${l.original_name}`}>Delete</button>
              </div>
            </li>
          ))}
        </ul>
      )}

      <h2>Shared LoRAs</h2>
      {shared.length === 0 ? (
        <p class="empty">No shared LoRAs.</p>
      ) : (
        <table class="table">
          <caption class="visually-hidden">Shared LoRAs (read-only)</caption>
          <thead><tr><th scope="col">File</th><th scope="col">Size</th><th scope="col">sha256</th></tr></thead>
          <tbody>
            {shared.map((s) => (
              <tr key={s.filename}><td data-label="File">{s.filename}</td><td data-label="Size">{bytes(s.size_bytes)}</td><td data-label="sha256"><code title={s.sha256 ?? ''}>{shortSha(s.sha256)}</code></td></tr>
            ))}
          </tbody>
        </table>
      )}

      <ConfirmDialog
        open={toDelete !== null}
        title="Delete this LoRA?"
        body={<p>{toDelete?.original_name} ({bytes(toDelete?.size_bytes)}) will be removed for good. Jobs that need it will fail.</p>}
        confirmLabel="Delete"
        onCancel={() => setToDelete(null)}
        onConfirm={() => toDelete && void remove(toDelete)}
      />
    </section>
  );
}

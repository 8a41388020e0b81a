import type { ComponentChildren } from 'preact';
import { useEffect, useRef } from 'preact/hooks';

export function ErrorNote({ message, onDismiss }: { message: string; onDismiss?: () => void }) {
  return (
    <div class="error" role="alert">
      <span>{message}</span>
      {onDismiss && <button type="button" class="link" onClick={onDismiss} aria-label="Dismiss this message">Dismiss</button>}
    </div>
  );
}

export function Meter({ label, value, max, text }: { label: string; value: number; max: number; text: string }) {
  const pct = max > 0 ? Math.min(100, (value / max) * 100) : 0;
  return (
    <div class="meter">
      <div class="meter-label"><span>{label}</span><span>{text}</span></div>
      <div class="bar" role="meter" aria-label={label} aria-valuemin={0} aria-valuemax={max} aria-valuenow={value} aria-valuetext={text}>
        <div class={pct >= 90 ? 'fill warn' : 'fill'} style={{ width: `${pct}%` }} />
      </div>
    </div>
  );
}

export function Badge({ kind, children }: { kind: string; children: ComponentChildren }) {
  return <span class={`badge ${kind}`}>{children}</span>;
}

/** A modal confirmation on the native <dialog>: focus moves in, Esc cancels, focus returns after. */
export function ConfirmDialog({ open, title, body, confirmLabel, onConfirm, onCancel }: { open: boolean; title: string; body: ComponentChildren; confirmLabel: string; onConfirm: () => void; onCancel: () => void }) {
  const ref = useRef<HTMLDialogElement>(null);
  useEffect(() => {
    const d = ref.current;
    if (!d) return;
    if (open && !d.open) d.showModal();
    if (!open && d.open) d.close();
  }, [open]);
  return (
    <dialog ref={ref} aria-labelledby="confirm-title" onCancel={(e) => { e.preventDefault(); onCancel(); }}>
      <h2 id="confirm-title">{title}</h2>
      <div>{body}</div>
      <div class="actions">
        <button type="button" onClick={onCancel}>Keep it</button>
        <button type="button" class="danger" onClick={onConfirm}>{confirmLabel}</button>
      </div>
    </dialog>
  );
}

/** Calls `fn` now and every `ms` while `active`; stops on unmount. */
export function usePoll(fn: () => void | Promise<void>, ms: number, active: boolean, deps: unknown[] = []) {
  const saved = useRef(fn);
  saved.current = fn;
  useEffect(() => {
    if (!active) return;
    let stopped = false;
    let timer: ReturnType<typeof setTimeout>;
    const tick = async () => {
      try {
        await saved.current();
      } finally {
        if (!stopped) timer = setTimeout(tick, ms);
      }
    };
    timer = setTimeout(tick, ms);
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  }, [active, ms, ...deps]);
}

// A binary min-heap of simulator events, ordered by (time, rank, insertion order) so runs are deterministic.

/** Event kinds; the value is also the rank among events at the same instant. */
export const EventKind = {
  /** Downloads on a machine finished (stale when `b` is not the machine's current download-plan version). */
  DownloadDone: 0,
  JobEnd: 1,
  Arrival: 2,
  Tick: 3,
  TtlSweep: 4,
  /** A pre-fetch hint reaches machine `a` (LoRA index `b`) with its heartbeat answer (prewarm.ts). */
  Hint: 5,
} as const;
export type EventKind = (typeof EventKind)[keyof typeof EventKind];

export interface SimEvent {
  t: number;
  kind: EventKind;
  /** Job index (Arrival, JobEnd) or machine index (DownloadDone, Hint). */
  a: number;
  /** DownloadDone: the machine's download-plan version when the event was made. */
  b: number;
  seq: number;
}

/**
 * At equal times: completions first (a tick then sees the freed slots and the new copies), then arrivals (a job that
 * arrives on a tick is routed by it), then the tick, then maintenance.
 */
function before(x: SimEvent, y: SimEvent): boolean {
  if (x.t !== y.t) return x.t < y.t;
  if (x.kind !== y.kind) return x.kind < y.kind;
  return x.seq < y.seq;
}

export class EventQueue {
  private readonly heap: SimEvent[] = [];
  private seq = 0;

  get size(): number {
    return this.heap.length;
  }

  push(t: number, kind: EventKind, a = 0, b = 0): void {
    const e: SimEvent = { t, kind, a, b, seq: this.seq++ };
    const h = this.heap;
    let i = h.length;
    h.push(e);
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!before(e, h[p]!)) break;
      h[i] = h[p]!;
      i = p;
    }
    h[i] = e;
  }

  pop(): SimEvent | undefined {
    const h = this.heap;
    const top = h[0];
    const last = h.pop();
    if (top === undefined || last === undefined || h.length === 0) return top;
    const n = h.length;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const c = r < n && before(h[r]!, h[l]!) ? r : l;
      if (!before(h[c]!, last)) break;
      h[i] = h[c]!;
      i = c;
    }
    h[i] = last;
    return top;
  }
}

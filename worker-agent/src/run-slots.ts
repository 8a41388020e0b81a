// The agent's run slots when it holds queued dispatches (QUEUE_DEPTH > 0, issue 14: downloads that overlap GPU work).
// The receive loop takes up to SLOTS + QUEUE_DEPTH dispatches; every run claims and downloads its LoRAs at once, then
// waits here for one of the SLOTS before it reports `started` and starts the executor. First ready, first run; a
// cancelled wait (abort) leaves the line without taking a slot.

export class RunSlots {
  private free: number;
  private readonly waiting: { grant: (release: () => void) => void; signal?: AbortSignal; onAbort?: () => void }[] = [];

  constructor(readonly slots: number) {
    this.free = slots;
  }

  /** Runs holding a slot now. */
  get running(): number {
    return this.slots - this.free;
  }

  /** Runs waiting for a slot. */
  get queued(): number {
    return this.waiting.length;
  }

  /** Resolves with a release function once a slot is free for this run; rejects with the signal's reason on abort. */
  take(signal?: AbortSignal): Promise<() => void> {
    if (signal?.aborted) return Promise.reject(signal.reason ?? new Error('aborted'));
    if (this.free > 0 && this.waiting.length === 0) {
      this.free--;
      return Promise.resolve(this.releaser());
    }
    return new Promise((resolve, reject) => {
      const entry: (typeof this.waiting)[number] = { grant: resolve, signal };
      if (signal) {
        entry.onAbort = () => {
          const i = this.waiting.indexOf(entry);
          if (i >= 0) this.waiting.splice(i, 1);
          reject(signal.reason ?? new Error('aborted'));
        };
        signal.addEventListener('abort', entry.onAbort, { once: true });
      }
      this.waiting.push(entry);
    });
  }

  private releaser(): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.waiting.shift();
      if (!next) {
        this.free++;
        return;
      }
      if (next.onAbort) next.signal!.removeEventListener('abort', next.onAbort);
      next.grant(this.releaser());
    };
  }
}

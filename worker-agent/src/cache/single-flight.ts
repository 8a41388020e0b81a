// Single-flight downloads: concurrent acquires of the same key and version share one transfer. A waiter that gives
// up (its signal aborts) stops waiting; the transfer itself stops only when nobody waits any more.

type ProgressListener = (bytes: number, total: number) => void;

interface Flight {
  sha256: string;
  controller: AbortController;
  promise: Promise<{ bytes: number }>;
  waiters: number;
  listeners: Set<ProgressListener>;
}

export interface FlightRequest {
  key: string;
  sha256: string;
}

export class SingleFlight {
  private readonly flights = new Map<string, Flight>();

  /**
   * Joins the flight for `want.key` at `want.sha256`, or starts one with `start` unless `isDone()` says there is
   * nothing to fetch. `started` tells whether this call started the transfer (its bytes are this call's).
   */
  async join(
    want: FlightRequest,
    signal: AbortSignal,
    onProgress: ProgressListener | undefined,
    isDone: () => boolean,
    start: (signal: AbortSignal, onProgress: ProgressListener) => Promise<{ bytes: number }>,
  ): Promise<{ bytes: number; started: boolean }> {
    let flight = this.flights.get(want.key);
    while (flight && flight.sha256 !== want.sha256) {
      // Another version of this key is downloading (a shared LoRA replaced upstream): let it finish first.
      await flight.promise.catch(() => undefined);
      signal.throwIfAborted();
      flight = this.flights.get(want.key);
    }
    let started = false;
    if (!flight) {
      if (isDone()) return { bytes: 0, started: false };
      const controller = new AbortController();
      const listeners = new Set<ProgressListener>();
      const created: Flight = {
        sha256: want.sha256,
        controller,
        waiters: 0,
        listeners,
        promise: start(controller.signal, (b, t) => {
          for (const l of listeners) l(b, t);
        }).finally(() => {
          if (this.flights.get(want.key) === created) this.flights.delete(want.key);
        }),
      };
      created.promise.catch(() => undefined); // failures are reported to the waiters
      this.flights.set(want.key, created);
      flight = created;
      started = true;
    }
    const f = flight;
    f.waiters += 1;
    if (onProgress) f.listeners.add(onProgress);
    return new Promise((resolve, reject) => {
      let settled = false;
      const done = (): void => {
        settled = true;
        signal.removeEventListener('abort', onAbort);
        if (onProgress) f.listeners.delete(onProgress);
      };
      const onAbort = (): void => {
        if (settled) return;
        done();
        f.waiters -= 1;
        // Nobody waits any more: stop the transfer (the partial file stays for a later resume).
        if (f.waiters === 0) f.controller.abort(signal.reason);
        reject(signal.reason);
      };
      if (signal.aborted) return onAbort();
      signal.addEventListener('abort', onAbort, { once: true });
      f.promise.then(
        (r) => {
          if (settled) return;
          done();
          resolve({ bytes: r.bytes, started });
        },
        (err: unknown) => {
          if (settled) return;
          done();
          reject(err);
        },
      );
    });
  }

  /** Aborts every transfer and waits for all of them to settle. */
  async abortAll(reason: Error): Promise<void> {
    const pending = [...this.flights.values()];
    for (const f of pending) f.controller.abort(reason);
    await Promise.allSettled(pending.map((f) => f.promise));
  }
}

// When a machine can start one more job: the expected seconds until one of its slots is free for it. Shared by the
// delay rule (delay.ts) and the `start` scorer. Estimated from the busy jobs' start/assignment times
// (`MachineState.busySinceMs`: residual = expected run time − age, at least RESIDUAL_FLOOR of it); a job the machine
// holds beyond its slots (a queue position, `MachineState.queueDepth`) counts a whole run, one taken in this pass too.
// "Expected run time" is the busy job's own (`MachineState.busyRunSeconds`, learned per service) when given, else
// `expectedJobSeconds`.
import type { PassState } from './state.js';

/** A busy job past its expected run time is still expected to run this share of it. */
export const RESIDUAL_FLOOR = 0.3;

export class SlotWait {
  /** Per machine, each reported busy job's residual and whole run time (seconds), by ascending residual (lazy). */
  private readonly residuals = new Map<number, { residual: number; run: number }[]>();

  constructor(private readonly s: PassState) {}

  private residualsOf(m: number): { residual: number; run: number }[] | undefined {
    const { busySinceMs: since, busyRunSeconds: runs } = this.s.ms[m]!;
    if (!since) return undefined;
    let list = this.residuals.get(m);
    if (!list) {
      const now = this.s.input.nowMs;
      list = [];
      for (let i = 0; i < since.length; i++) {
        const T = runs?.[i] ?? this.s.expectedJobSeconds;
        list.push({ residual: Math.max(T - (now - since[i]!) / 1000, T * RESIDUAL_FLOOR), run: T });
      }
      list.sort((a, b) => a.residual - b.residual);
      this.residuals.set(m, list);
    }
    return list;
  }

  /**
   * Expected seconds until machine `m` can start a job that has `c` other waiters ahead of it (besides its busy jobs).
   * 0 while a slot is free for it. Without a queue (busy ≤ slots) it waits for the (busy + c − slots + 1)-th slot to
   * free: Infinity when that is more than its busy jobs (the delay rule's "no more waiters here"). With queued jobs,
   * list scheduling: the `slots` soonest-freeing jobs run, each queued job (and waiter) takes the first slot to free.
   */
  seconds(m: number, c: number): number {
    const { s } = this;
    const slots = s.slots[m]!;
    const busy = s.busy[m]!;
    if (busy + c < slots) return 0;
    const T = s.expectedJobSeconds;
    const list = this.residualsOf(m);
    if (busy <= slots) {
      const k = busy + c - slots;
      if (k >= busy) return Infinity;
      if (!list) return (T * (k + 1)) / Math.max(1, slots);
      // Slots taken in this pass (or not covered by busySinceMs) free after about a whole run.
      return k < list.length ? list[k]!.residual : T;
    }
    const servers: number[] = [];
    for (let i = 0; i < slots; i++) servers.push(list ? (i < list.length ? list[i]!.residual : T) : (T * (i + 1)) / slots);
    for (let q = 0; q < busy - slots + c; q++) {
      let min = 0;
      for (let i = 1; i < slots; i++) if (servers[i]! < servers[min]!) min = i;
      // A queued job runs its own expected time once it has a slot; a waiter of this pass, the fleet's.
      servers[min]! += list?.[slots + q]?.run ?? T;
    }
    let first = servers[0]!;
    for (let i = 1; i < slots; i++) if (servers[i]! < first) first = servers[i]!;
    return first;
  }
}

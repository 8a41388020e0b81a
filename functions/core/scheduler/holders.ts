// The LoRA holder index of one pass: which machines of a pool cache each LoRA key the pass needs. Keys get small ids
// per (pool, kind); the machines holding each id are one slice of a flat array (free-at-start machines first, then, for
// the delay rule, the busy ones), built by one scan of the machines' caches with no per-key arrays. Machines an earlier
// assignment of this pass sends the LoRA to (affinity) are kept per id beside it. For LoRAs checked per machine (common
// ones), a per-machine byte map is built on first use, so a hit is an array read, not a string look-up.
import type { Kind, PassState, PoolState } from './state.js';

export class HolderIndex {
  private nextId = 0;
  // Read by the candidate index and the delay rule in their loops (no callbacks, no slices); written by `build` only.
  /** Ids below this were indexed by `build`; later ones (not needed then) have no reported holders. */
  built = 0;
  /** Per id below `built`: its machines are `list[start[id] .. end[id])`, those free at pass start before `freeEnd[id]`. */
  start = new Int32Array(0);
  freeEnd = new Int32Array(0);
  end = new Int32Array(0);
  list = new Int32Array(0);
  /** Per id: machines an assignment of this pass sends the LoRA to (affinity only; the baselines see caches only). */
  readonly arrivals: (number[] | undefined)[] = [];
  /** Per id: 1 for each machine that caches the LoRA or (affinity) receives it in this pass; built on first use. */
  private readonly maps: (Uint8Array | undefined)[] = [];
  /** Per id: its first HRW ranks over the pool's members (candidates.ts `homesOf`). */
  readonly homes: (number[] | undefined)[] = [];

  constructor(private readonly s: PassState) {}

  /** The id of a LoRA key in a pool (a new one if the key was not seen in this pass). */
  idOf(pool: PoolState, kind: Kind, key: string): number {
    const ids = pool.keyIds[kind];
    let id = ids.get(key);
    if (id === undefined) {
      id = this.nextId++;
      ids.set(key, id);
    }
    return id;
  }

  /**
   * Indexes the machines that cache the keys seen so far (`idOf`): those with a free slot at pass start, and with
   * `withBusy` (the delay rule) those without one. Runs once per pass, before any assignment.
   */
  build(withBusy: boolean): void {
    const { s } = this;
    const { free, ms } = s;
    const n = this.nextId;
    const freeCount = new Int32Array(n);
    const busyCount = new Int32Array(n);
    let size = 0;
    for (const pool of s.pools.values()) {
      for (const m of pool.members) {
        if (free[m]! > 0 || withBusy) size += ms[m]!.cachedUser.size + ms[m]!.cachedShared.size;
      }
    }
    // One scan of the caches: (id, machine) per cached key the pass needs; a busy machine is stored as ~machine.
    const entryId = new Int32Array(size);
    const entryMachine = new Int32Array(size);
    let e = 0;
    for (const pool of s.pools.values()) {
      const [userIds, sharedIds] = pool.keyIds;
      for (const m of pool.members) {
        const isFree = free[m]! > 0;
        if (!isFree && !withBusy) continue;
        const tag = isFree ? m : ~m;
        const counts = isFree ? freeCount : busyCount;
        const machine = ms[m]!;
        if (userIds.size > 0) {
          for (const key of machine.cachedUser) {
            const id = userIds.get(key);
            if (id === undefined) continue;
            entryId[e] = id;
            entryMachine[e++] = tag;
            counts[id]!++;
          }
        }
        if (sharedIds.size > 0) {
          for (const key of machine.cachedShared) {
            const id = sharedIds.get(key);
            if (id === undefined) continue;
            entryId[e] = id;
            entryMachine[e++] = tag;
            counts[id]!++;
          }
        }
      }
    }
    const start = new Int32Array(n);
    const freeEnd = new Int32Array(n);
    const end = new Int32Array(n);
    let at = 0;
    for (let id = 0; id < n; id++) {
      start[id] = at;
      freeEnd[id] = at + freeCount[id]!;
      at += freeCount[id]! + busyCount[id]!;
      end[id] = at;
    }
    // Fill: the counts become write cursors.
    const list = new Int32Array(at);
    for (let id = 0; id < n; id++) {
      freeCount[id] = start[id]!;
      busyCount[id] = freeEnd[id]!;
    }
    for (let k = 0; k < e; k++) {
      const id = entryId[k]!;
      const tag = entryMachine[k]!;
      if (tag >= 0) list[freeCount[id]!++] = tag;
      else list[busyCount[id]!++] = ~tag;
    }
    this.start = start;
    this.freeEnd = freeEnd;
    this.end = end;
    this.list = list;
    this.built = n;
  }

  /** Machines with a free slot at pass start that cache the LoRA, plus machines it is sent to in this pass. */
  count(id: number): number {
    const arrivals = this.arrivals[id];
    const reported = id < this.built ? this.freeEnd[id]! - this.start[id]! : 0;
    return reported + (arrivals ? arrivals.length : 0);
  }

  /** Records that an assignment sends the LoRA to machine `m` (affinity). */
  arrive(id: number, m: number): void {
    const arrivals = this.arrivals[id];
    if (arrivals) arrivals.push(m);
    else this.arrivals[id] = [m];
    const map = this.maps[id];
    if (map) map[m] = 1;
  }

  /**
   * The byte map of an indexed id (machines that cache it, and those it is sent to), or undefined for an id `build`
   * did not index (the caller then asks the caches). Covers the machines `build` scanned.
   */
  mapOf(id: number): Uint8Array | undefined {
    if (id >= this.built) return undefined;
    let map = this.maps[id];
    if (!map) {
      map = new Uint8Array(this.s.ms.length);
      const list = this.list;
      for (let k = this.start[id]!, stop = this.end[id]!; k < stop; k++) map[list[k]!] = 1;
      const arrivals = this.arrivals[id];
      if (arrivals) for (const m of arrivals) map[m] = 1;
      this.maps[id] = map;
    }
    return map;
  }
}

// The LoRA holder index of one pass: which machines of a pool cache each LoRA key the pass needs. Keys get small ids
// per (pool, kind); the machines holding each id are one slice of a flat array, built by one scan of the machines'
// caches with no per-key arrays: one such index of the machines with a free slot at pass start (the candidates) and,
// built only when the delay rule first looks, one of the machines without one. Machines an earlier assignment of this
// pass sends the LoRA to (affinity) are kept per id beside them. For LoRAs checked per machine (common ones), a byte
// per machine says whether it holds the LoRA, so such a hit is an array read, not a string look-up.
import type { Kind, PassState, PoolState } from './state.js';

/** Per id below `built`: the machines `list[start[id] .. end[id])`. */
export interface Slices {
  built: number;
  start: Int32Array;
  end: Int32Array;
  list: Int32Array;
}

const EMPTY: Slices = { built: 0, start: new Int32Array(0), end: new Int32Array(0), list: new Int32Array(0) };

// A scan's (id, machine) entries, one per cached key the pass needs, kept from pass to pass and grown as needed:
// allocating them per scan (8 bytes per cached key of every scanned machine) was most of a pass's off-heap memory,
// which the garbage collector counts towards starting a full collection. A pass runs to completion; none overlap.
let entryIds = new Int32Array(0);
let entryMachines = new Int32Array(0);

export class HolderIndex {
  private nextId = 0;
  /** 1 for the machines with a free slot at pass start (taken at the first `index`). */
  private freeAtStart: Uint8Array | null = null;
  /**
   * Machines with a free slot at pass start that cache each id (ids below `built` were indexed; a later id, whose key
   * no routed job needed then, has none).
   */
  reported: Slices = EMPTY;
  private busy: Slices = EMPTY;
  /** Per id: machines an assignment of this pass sends the LoRA to (affinity only; the baselines see caches only). */
  readonly arrivals: (number[] | undefined)[] = [];
  /** Per id: offset of its map in `maps` (one byte per machine: holds the LoRA), or -1 before its first use. */
  private mapAt = new Int32Array(0);
  private maps = new Uint8Array(0);
  private mapCount = 0;
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
   * Indexes the machines with a free slot at pass start that cache the keys seen so far (`idOf`). The first call must
   * come before any assignment; a later one (more keys) re-indexes them all against the same start.
   */
  index(): void {
    const free = this.s.free;
    if (!this.freeAtStart) {
      this.freeAtStart = new Uint8Array(free.length);
      for (let m = 0; m < free.length; m++) this.freeAtStart[m] = free[m]! > 0 ? 1 : 0;
    }
    this.reported = this.scan(1);
    const mapAt = new Int32Array(this.nextId).fill(-1);
    mapAt.set(this.mapAt);
    this.mapAt = mapAt;
  }

  /** Machines without a free slot at pass start that cache each id (the delay rule's), indexed on first use. */
  busyHolders(): Slices {
    if (this.busy.built < this.nextId) this.busy = this.scan(0);
    return this.busy;
  }

  /**
   * The machines caching each id among the pool members whose `freeAtStart` is `flag`: per pool, one scan of their
   * caches (a look-up per cached key), or, when the pass needs few keys there (a placement for one new job), a cache
   * look-up per (key, machine), whichever is fewer. Both list a key's machines in member order.
   */
  private scan(flag: number): Slices {
    const { ms, pools } = this.s;
    const freeAtStart = this.freeAtStart!;
    const n = this.nextId;
    const count = new Int32Array(n);
    const scannedOf: number[][] = [];
    const cachedOf: number[] = [];
    let size = 0;
    for (const pool of pools.values()) {
      const scanned: number[] = [];
      let cached = 0;
      for (const m of pool.members) {
        if (freeAtStart[m] !== flag) continue;
        scanned.push(m);
        cached += ms[m]!.cachedUser.size + ms[m]!.cachedShared.size;
      }
      scannedOf.push(scanned);
      cachedOf.push(cached);
      size += cached;
    }
    // (id, machine) per cached key the pass needs, then a counting sort by id.
    if (entryIds.length < size) {
      entryIds = new Int32Array(size + (size >> 2));
      entryMachines = new Int32Array(size + (size >> 2));
    }
    const entryId = entryIds;
    const entryMachine = entryMachines;
    let e = 0;
    let p = 0;
    for (const pool of pools.values()) {
      const [userIds, sharedIds] = pool.keyIds;
      const scanned = scannedOf[p]!;
      const cached = cachedOf[p++]!;
      if ((userIds.size + sharedIds.size) * scanned.length < cached) {
        for (const m of scanned) {
          const machine = ms[m]!;
          for (const [key, id] of userIds) {
            if (!machine.cachedUser.has(key)) continue;
            entryId[e] = id;
            entryMachine[e++] = m;
            count[id]!++;
          }
          for (const [key, id] of sharedIds) {
            if (!machine.cachedShared.has(key)) continue;
            entryId[e] = id;
            entryMachine[e++] = m;
            count[id]!++;
          }
        }
        continue;
      }
      for (const m of scanned) {
        const machine = ms[m]!;
        if (userIds.size > 0) {
          for (const key of machine.cachedUser) {
            const id = userIds.get(key);
            if (id === undefined) continue;
            entryId[e] = id;
            entryMachine[e++] = m;
            count[id]!++;
          }
        }
        if (sharedIds.size > 0) {
          for (const key of machine.cachedShared) {
            const id = sharedIds.get(key);
            if (id === undefined) continue;
            entryId[e] = id;
            entryMachine[e++] = m;
            count[id]!++;
          }
        }
      }
    }
    const start = new Int32Array(n);
    const end = new Int32Array(n);
    let at = 0;
    for (let id = 0; id < n; id++) {
      start[id] = at;
      end[id] = at; // a write cursor until the fill is done
      at += count[id]!;
    }
    const list = new Int32Array(at);
    for (let k = 0; k < e; k++) list[end[entryId[k]!]!++] = entryMachine[k]!;
    return { built: n, start, end, list };
  }

  /** Machines with a free slot at pass start that cache the LoRA, plus machines it is sent to in this pass. */
  count(id: number): number {
    const arrivals = this.arrivals[id];
    const { reported } = this;
    return (id < reported.built ? reported.end[id]! - reported.start[id]! : 0) + (arrivals ? arrivals.length : 0);
  }

  /** Records that an assignment sends the LoRA to machine `m` (affinity). */
  arrive(id: number, m: number): void {
    const arrivals = this.arrivals[id];
    if (arrivals) arrivals.push(m);
    else this.arrivals[id] = [m];
    const at = id < this.mapAt.length ? this.mapAt[id]! : -1;
    if (at >= 0) this.maps[at + m] = 1;
  }

  /**
   * For an indexed id, the offset in `holdsMap()` of its map: 1 for each machine with a free slot at pass start that
   * caches it or (affinity) that it is sent to in this pass. -1 for an id `index` did not cover (ask the caches).
   */
  mapOf(id: number): number {
    if (id >= this.reported.built) return -1;
    let at = this.mapAt[id]!;
    if (at < 0) {
      const n = this.s.ms.length;
      if ((this.mapCount + 1) * n > this.maps.length) {
        const grown = new Uint8Array(Math.max(16, 2 * this.mapCount + 1) * n);
        grown.set(this.maps);
        this.maps = grown;
      }
      at = this.mapCount++ * n;
      this.mapAt[id] = at;
      const { start, end, list } = this.reported;
      for (let k = start[id]!, stop = end[id]!; k < stop; k++) this.maps[at + list[k]!] = 1;
      const arrivals = this.arrivals[id];
      if (arrivals) for (const m of arrivals) this.maps[at + m] = 1;
    }
    return at;
  }

  /** The buffer `mapOf` offsets point into (it may be replaced when a map is added). */
  holdsMap(): Uint8Array {
    return this.maps;
  }
}

// A binary min-heap over small integer ids (machine indices) that supports re-keying and removal by id. The scheduler
// keeps one per pool so "the least-loaded machines that still have a free slot" costs O(k log k) per job, not O(pool).

export class IndexedHeap {
  private readonly items: number[] = [];
  private readonly pos: Int32Array;
  /** The walk's frontier: heap positions whose parent was visited (at most one more than the visits). */
  private readonly frontier: Int32Array;
  private frontierSize = 0;

  /** `before(a, b)`: true when `a` must come out before `b`. It must be a strict total order (break ties by id). */
  constructor(
    capacity: number,
    private readonly before: (a: number, b: number) => boolean,
  ) {
    this.pos = new Int32Array(capacity).fill(-1);
    this.frontier = new Int32Array(capacity + 1);
  }

  get size(): number {
    return this.items.length;
  }

  has(id: number): boolean {
    return this.pos[id]! >= 0;
  }

  push(id: number): void {
    if (this.has(id)) return;
    this.items.push(id);
    this.pos[id] = this.items.length - 1;
    this.up(this.items.length - 1);
  }

  remove(id: number): void {
    const i = this.pos[id]!;
    if (i < 0) return;
    const last = this.items.pop()!;
    this.pos[id] = -1;
    if (i < this.items.length) {
      this.items[i] = last;
      this.pos[last] = i;
      this.up(i);
      this.down(this.pos[last]!);
    }
  }

  /** Call after the key of `id` changed. */
  update(id: number): void {
    const i = this.pos[id]!;
    if (i < 0) return;
    this.up(i);
    this.down(this.pos[id]!);
  }

  /**
   * Visits ids in heap order (best first) without changing the heap, until `visit` returns false or all are seen.
   * Costs O(k²) for k visits (the frontier is scanned linearly), which is cheaper than a second heap for small k.
   */
  walk(visit: (id: number) => boolean): void {
    this.startWalk();
    for (let id = this.nextInWalk(); id >= 0; id = this.nextInWalk()) if (!visit(id)) return;
  }

  /** Starts a walk in heap order without changing the heap (`nextInWalk`); the heap must not change during it. */
  startWalk(): void {
    this.frontierSize = 0;
    if (this.items.length > 0) this.frontier[this.frontierSize++] = 0;
  }

  /** The next id of the walk in heap order, or -1 once all were visited. */
  nextInWalk(): number {
    const { frontier, items } = this;
    if (this.frontierSize === 0) return -1;
    let best = 0;
    for (let f = 1; f < this.frontierSize; f++) {
      if (this.before(items[frontier[f]!]!, items[frontier[best]!]!)) best = f;
    }
    const i = frontier[best]!;
    frontier[best] = frontier[--this.frontierSize]!;
    const l = 2 * i + 1;
    if (l < items.length) frontier[this.frontierSize++] = l;
    if (l + 1 < items.length) frontier[this.frontierSize++] = l + 1;
    return items[i]!;
  }

  /** Appends the `k` first ids in heap order to `out`, best first, without changing the heap. */
  firstK(k: number, out: number[]): void {
    let taken = 0;
    if (k <= 0) return;
    this.walk((id) => {
      out.push(id);
      return ++taken < k;
    });
  }

  private up(i: number): void {
    const items = this.items;
    const id = items[i]!;
    while (i > 0) {
      const p = (i - 1) >> 1;
      const parent = items[p]!;
      if (!this.before(id, parent)) break;
      items[i] = parent;
      this.pos[parent] = i;
      i = p;
    }
    items[i] = id;
    this.pos[id] = i;
  }

  private down(i: number): void {
    const items = this.items;
    const n = items.length;
    const id = items[i]!;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const c = r < n && this.before(items[r]!, items[l]!) ? r : l;
      const child = items[c]!;
      if (!this.before(child, id)) break;
      items[i] = child;
      this.pos[child] = i;
      i = c;
    }
    items[i] = id;
    this.pos[id] = i;
  }
}

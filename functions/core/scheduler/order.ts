// Job ordering: the routing order (priority, then age, then id) and the selection of the first k jobs in it.
import type { PendingJob } from './types.js';

/** Routing order: higher priority first, then older, then by id. */
export function compareJobs(a: PendingJob, b: PendingJob): number {
  if (a.priority !== b.priority) return b.priority - a.priority;
  if (a.createdAtMs !== b.createdAtMs) return a.createdAtMs - b.createdAtMs;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

const TWO_POW_42 = 2 ** 42;

/**
 * (priority, createdAtMs) packed into one exact double that sorts in routing order, or NaN when the values do not fit
 * (priority an integer in 0..1023, createdAtMs an integer in [0, 2^42), i.e. before the year 2109).
 */
export function packedRank(job: PendingJob): number {
  const p = job.priority;
  const t = job.createdAtMs;
  if (!Number.isInteger(p) || p < 0 || p > 1023 || !Number.isInteger(t) || t < 0 || t >= TWO_POW_42) return NaN;
  return (1023 - p) * TWO_POW_42 + t;
}

/**
 * Routing order over job indices (ties by index, so a strict total order): by the packed ranks when every routable
 * job has one (`packed`), else by `compareJobs`.
 */
export function routingComparator(
  jobs: readonly PendingJob[],
  rank: Float64Array,
  packed: boolean,
): (a: number, b: number) => number {
  return packed
    ? (a, b) => {
        const d = rank[a]! - rank[b]!;
        if (d !== 0) return d;
        const x = jobs[a]!.id;
        const y = jobs[b]!.id;
        return x < y ? -1 : x > y ? 1 : a - b;
      }
    : (a, b) => compareJobs(jobs[a]!, jobs[b]!) || a - b;
}

/**
 * Splits `indices` into the `k` first by `cmp` (a strict total order), sorted, and the rest (unsorted). A bounded
 * max-heap: O(n log k) in the worst case, about O(n) when most jobs lose to the k-th best at the first comparison.
 */
export function firstInOrder(
  indices: ArrayLike<number>,
  k: number,
  cmp: (a: number, b: number) => number,
): { first: number[]; rest: Int32Array } {
  if (indices.length <= k) return { first: Array.from(indices).sort(cmp), rest: new Int32Array(0) };
  const heap: number[] = []; // heap[0] is the last in routing order among those kept
  const rest = new Int32Array(indices.length - Math.max(0, k));
  let r = 0;
  for (let x = 0; x < indices.length; x++) {
    const job = indices[x]!;
    if (heap.length < k) {
      let i = heap.length;
      heap.push(job);
      while (i > 0) {
        const p = (i - 1) >> 1;
        if (cmp(heap[p]!, job) >= 0) break;
        heap[i] = heap[p]!;
        i = p;
      }
      heap[i] = job;
    } else if (k > 0 && cmp(job, heap[0]!) < 0) {
      rest[r++] = heap[0]!;
      let i = 0;
      const n = heap.length;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= n) break;
        const r = l + 1;
        const c = r < n && cmp(heap[r]!, heap[l]!) > 0 ? r : l;
        if (cmp(heap[c]!, job) <= 0) break;
        heap[i] = heap[c]!;
        i = c;
      }
      heap[i] = job;
    } else {
      rest[r++] = job;
    }
  }
  return { first: heap.sort(cmp), rest };
}

// Rendezvous (highest-random-weight) hashing. Every scheduler instance and every pass ranks a pool's machines for a
// given LoRA key in the same order, so jobs for a cold LoRA keep landing on the same machine (its "HRW home") even
// before a heartbeat reports that the LoRA is cached there. Adding or removing a machine only moves the keys whose
// home it was.

/** 32-bit FNV-1a over UTF-16 code units. Stable across processes and platforms. */
export function fnv1a32(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** MurmurHash3 finaliser: spreads every input bit over the whole word. */
export function fmix32(x: number): number {
  let h = x | 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Per-machine seed, computed once per pass. */
export function machineSeed(machineId: string): number {
  return fmix32(fnv1a32(machineId));
}

/** Per-LoRA seed; `kind` keeps a user key and a shared file name of the same spelling apart. */
export function loraSeed(kind: 'user' | 'shared', key: string): number {
  return fmix32(fnv1a32(key) ^ (kind === 'user' ? 0x5bd1e995 : 0x1b873593));
}

/** The rendezvous weight of a (LoRA, machine) pair (both seeds already mixed). Higher = preferred. */
export function hrwWeight(loraSeedValue: number, machineSeedValue: number): number {
  return fmix32(loraSeedValue ^ machineSeedValue);
}

/**
 * Indices (into `seeds`, restricted to `candidates`) of the `k` machines with the highest rendezvous weight for a LoRA,
 * best first. Ties (practically never) go to the lower index. O(candidates × k) with tiny k, no allocation per machine.
 */
export function hrwTopK(loraSeedValue: number, candidates: readonly number[], seeds: ArrayLike<number>, k: number): number[] {
  const top: number[] = [];
  const weights: number[] = [];
  let floor = -1; // weight of the k-th best so far, once there are k
  for (const idx of candidates) {
    const w = fmix32(loraSeedValue ^ seeds[idx]!);
    if (w < floor) continue;
    let pos = top.length;
    while (pos > 0 && (weights[pos - 1]! < w || (weights[pos - 1] === w && top[pos - 1]! > idx))) pos--;
    if (pos >= k) continue;
    // Insert at `pos`, dropping the last one when k are kept.
    const last = Math.min(top.length, k - 1);
    for (let j = last; j > pos; j--) {
      top[j] = top[j - 1]!;
      weights[j] = weights[j - 1]!;
    }
    top[pos] = idx;
    weights[pos] = w;
    if (top.length === k) floor = weights[k - 1]!;
  }
  return top;
}

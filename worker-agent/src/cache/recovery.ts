// Startup recovery: make the inventory and the directory agree again after a crash, a manual edit or a smaller
// budget, before the cache serves anything.
import { readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { CacheBudget, CacheLogger } from './budget.js';
import type { CacheDb, CacheRow, LoraKind } from './cache-db.js';
import { planEviction } from './eviction.js';
import { PARTIAL_NAME, isEnoent, isValidKey, relativePath, type CacheLayout } from './layout.js';

/**
 * Drops rows whose file is missing or has the wrong size, deletes files without a row, and deletes partial
 * downloads that are stale, unparseable or of a version already registered.
 */
export function reconcile(db: CacheDb, layout: CacheLayout, log: CacheLogger, now: number, partialMaxAgeMs: number): void {
  const known = new Map<string, CacheRow>();
  for (const row of db.all()) {
    if (!isValidKey(row.kind, row.key)) {
      log.warn({ key: row.key }, 'cache: dropping row with an invalid key');
      db.remove(row.key);
      continue;
    }
    const rel = relativePath(row.kind, row.key);
    const abs = join(layout.cacheDir, rel);
    let size = -1;
    try {
      const st = statSync(abs);
      if (st.isFile()) size = st.size;
    } catch (err) {
      if (!isEnoent(err)) throw err;
    }
    if (size < 0) {
      log.warn({ key: row.key }, 'cache: file missing, dropping its row');
      db.remove(row.key);
      continue;
    }
    if (size !== row.size_bytes) {
      log.warn({ key: row.key, size, expected: row.size_bytes }, 'cache: file has the wrong size, deleting it');
      db.remove(row.key);
      rmSync(abs, { force: true });
      continue;
    }
    if (row.path !== rel) db.upsert({ ...row, path: rel });
    known.set(abs, row);
  }

  // Files nobody registered: a crash between rename and insert, or something copied in. Content unknown: delete.
  for (const kind of ['user', 'shared'] as const) {
    const dir = layout.kindDir(kind);
    for (const ent of readdirSync(dir, { withFileTypes: true })) {
      const abs = join(dir, ent.name);
      if (!ent.isFile()) {
        log.warn({ path: abs }, 'cache: leaving a non-file entry alone');
        continue;
      }
      if (!known.has(abs)) {
        log.warn({ path: abs }, 'cache: deleting a file without an inventory row');
        rmSync(abs, { force: true });
      }
    }
  }

  // Partial downloads: keep young ones for resume, unless the same version is already registered.
  for (const ent of readdirSync(layout.partialDir, { withFileTypes: true })) {
    const abs = join(layout.partialDir, ent.name);
    if (!ent.isFile()) continue;
    const m = PARTIAL_NAME.exec(ent.name);
    const kind = m?.[1] as LoraKind | undefined;
    const key = m?.[2];
    let keep = !!(kind && key && isValidKey(kind, key));
    if (keep && key) {
      const row = db.get(key);
      if (row && row.sha256.startsWith(m![3]!)) keep = false;
    }
    if (keep) {
      const age = now - statSync(abs).mtimeMs;
      keep = age < partialMaxAgeMs;
    }
    if (!keep) {
      log.info({ path: abs }, 'cache: deleting a stale partial download');
      rmSync(abs, { force: true });
    }
  }
}

/** A smaller budget than last time, or partials left by a crash: get back under budget before serving. */
export function enforceBudgetAtOpen(db: CacheDb, budget: CacheBudget, log: CacheLogger): void {
  const partials = budget.idlePartials().sort((a, b) => a.mtimeMs - b.mtimeMs);
  let partialBytes = partials.reduce((s, p) => s + p.size, 0);
  const registered = db.usedBytes();
  for (const p of partials) {
    if (registered + partialBytes <= budget.budgetBytes) break;
    rmSync(p.path, { force: true });
    partialBytes -= p.size;
  }
  if (registered > budget.budgetBytes) {
    const plan = planEviction(budget.entries(db), 0, budget.budgetBytes);
    if ('error' in plan) {
      log.error({ error: plan.error }, 'cache: over budget and cannot evict (pinned entries exceed the budget)');
      return;
    }
    budget.evict(db, plan.evict, 'lru');
  }
}

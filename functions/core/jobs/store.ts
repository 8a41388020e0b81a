// Cosmos access for job documents. Every change is a replace with IfMatch on the ETag the change was computed from.
import type { Container } from '@azure/cosmos';
import { conflict, notFound } from '../errors.js';
import { isNotFound, isPreconditionFailed } from '../sdk-errors.js';
import type { JobDoc } from './model.js';
import { readItem } from '../point-read.js';

/** Point read in the tenant's partition; null when absent (another tenant's job is simply absent). */
export async function readJob(jobs: Container, tenantId: string, jobId: string): Promise<JobDoc | null> {
  const resource = await readItem<JobDoc>(jobs, jobId, tenantId);
  return resource && resource.doc_type === 'job' ? resource : null;
}

/** The user-facing read: 404 unless the job exists in the caller's partition. */
export async function readOwnJob(jobs: Container, tenantId: string, jobId: string): Promise<JobDoc> {
  const doc = await readJob(jobs, tenantId, jobId);
  if (!doc) throw notFound(`job ${jobId}`);
  return doc;
}

/**
 * Machines know a job by id only (the dispatch message is {job_id, epoch}): a cross-partition query on the id, which
 * Cosmos answers from the index.
 */
export async function findJobById(jobs: Container, jobId: string): Promise<JobDoc | null> {
  const { resources } = await jobs.items
    .query<JobDoc>({ query: 'SELECT * FROM c WHERE c.id = @id AND c.doc_type = "job"', parameters: [{ name: '@id', value: jobId }] })
    .fetchAll();
  return resources[0] ?? null;
}

/** Replace iff the document still has `expected._etag`. Returns the stored document, or null on a lost race (412). */
export async function casReplaceJob(jobs: Container, expected: JobDoc, next: JobDoc): Promise<JobDoc | null> {
  if (!expected._etag) throw new Error('casReplaceJob: the expected document has no _etag');
  try {
    const { resource } = await jobs
      .item(expected.id, expected.tenant_id)
      .replace<JobDoc>(next, { accessCondition: { type: 'IfMatch', condition: expected._etag } });
    return resource ?? null;
  } catch (err) {
    if (isPreconditionFailed(err) || isNotFound(err)) return null;
    throw err;
  }
}

/**
 * Read-decide-write with retries: `decide` sees the freshest document and returns the next one, or `null` to leave
 * it unchanged (the current document is then returned). It may throw an ApiError to refuse. On a lost race the
 * document is re-read and `decide` runs again, so every decision is made on the state it replaces.
 */
export async function updateJob(
  jobs: Container,
  current: JobDoc,
  decide: (doc: JobDoc) => JobDoc | null,
  attempts = 8,
): Promise<{ doc: JobDoc; changed: boolean }> {
  let doc = current;
  for (let i = 0; i < attempts; i++) {
    const next = decide(doc);
    if (!next) return { doc, changed: false };
    const stored = await casReplaceJob(jobs, doc, next);
    if (stored) return { doc: stored, changed: true };
    const fresh = await readJob(jobs, doc.tenant_id, doc.id);
    if (!fresh) throw notFound(`job ${doc.id}`);
    doc = fresh;
  }
  throw conflict(`job ${current.id} is changing too fast; try again`);
}

// Dead-lettered dispatches: what the transport gave up on (delivered MAX_DELIVERIES times without completion,
// malformed, or expired on Service Bus), joined with the job each one was for, and the way back.
//
// Most dead letters are stale by the time anyone looks: the reaper re-routes an unclaimed job after
// CLAIM_TIMEOUT_SECONDS with a new epoch, so the old message can no longer start anything. The one that matters is a
// job still `assigned` at the dead letter's epoch: nothing will deliver it again. Recovering puts that job back to
// pending at once (epoch moved on, same attempt, that machine avoided), like the reaper's claim timeout does.
import type { DeadLetterView } from '../../../contract/dispatch.js';
import type { DeadLetter } from '../../../dispatch/types.js';
import type { CoreDeps } from '../deps.js';
import { mapLimit } from '../map-limit.js';
import { afterClaimTimeout, isTerminal, type JobDoc } from './model.js';
import { findJobById, updateJob } from './store.js';

type DeadLetterVerdict = DeadLetterView['verdict'];

export const MAX_DEAD_LETTERS_PAGE = 100;

function verdictFor(dl: DeadLetter, job: JobDoc | null): DeadLetterVerdict {
  if (!dl.message || !job || isTerminal(job.status) || job.epoch !== dl.message.epoch) return 'stale';
  if (job.status === 'assigned') return 'replace';
  return job.status === 'running' ? 'running' : 'stale';
}

async function withJobs(deps: CoreDeps, letters: DeadLetter[]): Promise<{ letter: DeadLetter; job: JobDoc | null; view: DeadLetterView }[]> {
  return mapLimit(letters, 8, async (letter) => {
    const job = letter.message ? await findJobById(deps.jobs, letter.message.job_id) : null;
    const view: DeadLetterView = {
      message_id: letter.messageId,
      job_id: letter.message?.job_id ?? null,
      epoch: letter.message?.epoch ?? null,
      machine_id: letter.machineId,
      reason: letter.reason,
      description: letter.description,
      delivery_count: letter.deliveryCount,
      dead_lettered_at: letter.deadLetteredAt,
      job_status: job?.status ?? null,
      job_epoch: job?.epoch ?? null,
      verdict: verdictFor(letter, job),
    };
    return { letter, job, view };
  });
}

/** Up to `limit` dead letters with the state of their jobs. */
export async function listDeadLetters(deps: CoreDeps, limit = MAX_DEAD_LETTERS_PAGE): Promise<DeadLetterView[]> {
  return (await withJobs(deps, await deps.sender.deadLetters(limit))).map((x) => x.view);
}

export interface RecoverResult {
  /** Jobs put back to pending (the scheduler places them again). */
  replaced: string[];
  /** Dead letters removed (every one examined whose verdict was acted on). */
  removed: string[];
  /** Dead letters left in place: not found any more, or the job changed while we looked (look again). */
  kept: string[];
}

/**
 * Recovers the given dead letters (all listed ones when `messageIds` is empty): re-places jobs still assigned at the
 * dead letter's epoch, then removes the dead letters. Each job change is a compare-and-swap on the epoch we judged.
 */
export async function recoverDeadLetters(deps: CoreDeps, messageIds: readonly string[] = []): Promise<RecoverResult> {
  const all = await withJobs(deps, await deps.sender.deadLetters(MAX_DEAD_LETTERS_PAGE));
  const chosen = messageIds.length === 0 ? all : all.filter((x) => messageIds.includes(x.view.message_id));
  const replaced: string[] = [];
  const done: string[] = [];
  const kept: string[] = messageIds.filter((id) => !all.some((x) => x.view.message_id === id));
  await mapLimit(chosen, 8, async ({ letter, job, view }) => {
    if (view.verdict !== 'replace' || !job || !letter.message) {
      done.push(view.message_id);
      return;
    }
    const epoch = letter.message.epoch;
    const { doc, changed } = await updateJob(deps.jobs, job, (d) => (d.status === 'assigned' && d.epoch === epoch ? afterClaimTimeout(d, deps.now()) : null));
    if (changed) {
      replaced.push(doc.id);
      done.push(view.message_id);
      deps.log.info({ job_id: doc.id, machine_id: letter.machineId, reason: letter.reason }, 'dead-lettered dispatch: job re-placed');
    } else if (doc.epoch !== epoch || isTerminal(doc.status)) {
      done.push(view.message_id); // moved on meanwhile: stale now
    } else kept.push(view.message_id);
  });
  const removed = await deps.sender.removeDeadLetters(done);
  for (const id of done) if (!removed.includes(id)) kept.push(id);
  return { replaced, removed, kept };
}

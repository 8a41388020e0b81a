// Small helpers every test folder uses: waiting and polling, and reading a job back through the API.
import type { ApiClient } from '../../api-client/index.js';
import type { JobView } from '../../contract/jobs.js';

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Polls `fn` every `everyMs` until it returns something truthy (which is returned). A throw counts as "not yet" and
 * is named in the timeout error; `context` adds e.g. agent logs to that error.
 */
export async function until<T>(
  what: string,
  fn: () => Promise<T | undefined | null | false> | T | undefined | null | false,
  timeoutMs = 20_000,
  everyMs = 150,
  context?: () => string,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      const lastError = last ? ` (last error: ${(last as Error).message})` : '';
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastError}${context ? `\n${context()}` : ''}`);
    }
    await sleep(everyMs);
  }
}

export async function getJob(api: ApiClient, id: string): Promise<JobView> {
  return api.get<JobView>(`jobs/${id}`);
}

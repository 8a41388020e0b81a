// Paging GET /api/user-loras, kept free of zod so the web bundle can use it as is (see web/src/limits.ts).
import type { UserLora, UserLoraList } from './loras.js';

export const USER_LORA_PAGE_MAX = 1000;

/** Every page of GET /api/user-loras through the caller's own JSON GET (the CLI's and the web app's clients differ). */
export async function allUserLoras(get: (path: string) => Promise<UserLoraList>, pageSize = USER_LORA_PAGE_MAX): Promise<UserLora[]> {
  const out: UserLora[] = [];
  let continuation: string | null = null;
  do {
    const next: string = continuation === null ? '' : `&continuation=${encodeURIComponent(continuation)}`;
    const page: UserLoraList = await get(`user-loras?limit=${pageSize}${next}`);
    out.push(...page.loras);
    continuation = page.continuation;
  } while (continuation !== null);
  return out;
}

// The browser's API client: same origin as the app (/api), bearer token on every call, and every failure turned into
// an ApiError whose message a person can read (the API's own message when it sent one).
import { createParser, type EventSourceMessage } from 'eventsource-parser';
import type { ErrorBody } from '../../contract/errors.js';

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

/** The API sits one level above the app (/api/app/ → /api), on the same origin: no CORS, same token. */
export const API_BASE = import.meta.env.BASE_URL.replace(/app\/?$/, '').replace(/\/+$/, '');

const FRIENDLY: Record<number, string> = {
  401: 'Your sign-in has expired or is not valid. Sign in again.',
  403: 'You do not have access to this.',
  404: 'Not found.',
  413: 'That is too large.',
  429: 'Limit reached.',
  503: 'The service is not available right now. Try again in a moment.',
};

async function errorFrom(res: Response): Promise<ApiError> {
  let code = 'http_error';
  let message = FRIENDLY[res.status] ?? `The server answered ${res.status} ${res.statusText}.`;
  try {
    const body = (await res.json()) as Partial<ErrorBody>;
    if (body.error?.message) {
      code = body.error.code;
      message = body.error.message;
    }
  } catch {
    /* not JSON: keep the friendly text */
  }
  return new ApiError(res.status, code, message);
}

export function networkError(err: unknown): ApiError {
  if (err instanceof ApiError) return err;
  if ((err as Error)?.name === 'AbortError') return new ApiError(0, 'aborted', 'Cancelled.');
  return new ApiError(0, 'network', 'Cannot reach the server. Check your connection and try again.');
}

export class Api {
  constructor(private readonly token: () => Promise<string>) {}

  async authHeader(): Promise<Record<string, string>> {
    return { Authorization: `Bearer ${await this.token()}` };
  }

  async request<T>(method: string, path: string, body?: unknown, init: RequestInit = {}): Promise<T> {
    let res: Response;
    try {
      res = await fetch(`${API_BASE}/${path}`, {
        ...init,
        method,
        headers: {
          ...(await this.authHeader()),
          ...(body !== undefined ? { 'Content-Type': 'application/json' } : {}),
          ...(init.headers as Record<string, string> | undefined),
        },
        body: body !== undefined ? JSON.stringify(body) : undefined,
      });
    } catch (err) {
      throw networkError(err);
    }
    if (!res.ok) throw await errorFrom(res);
    if (res.status === 204) return undefined as T;
    return (await res.json()) as T;
  }

  get = <T>(path: string, init?: RequestInit) => this.request<T>('GET', path, undefined, init);
  post = <T>(path: string, body?: unknown) => this.request<T>('POST', path, body ?? {});
  delete = <T>(path: string) => this.request<T>('DELETE', path);

  /**
   * A server-sent event stream read with fetch, because EventSource cannot send the Authorization header. Resumes
   * after `lastEventId` when the server ends the stream early (`timeout`) or the connection drops; stops on `end`.
   */
  async stream(path: string, onEvent: (e: EventSourceMessage) => void, signal: AbortSignal): Promise<void> {
    let lastEventId: string | undefined;
    let failures = 0;
    while (!signal.aborted) {
      let ended = false;
      try {
        const res = await fetch(`${API_BASE}/${path}`, {
          headers: { ...(await this.authHeader()), Accept: 'text/event-stream', ...(lastEventId ? { 'Last-Event-ID': lastEventId } : {}) },
          signal,
        });
        if (!res.ok) throw await errorFrom(res);
        const parser = createParser({
          onEvent: (e) => {
            if (e.id) lastEventId = e.id;
            if (e.event === 'end' || e.event === 'error') ended = true;
            onEvent(e);
          },
        });
        const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          parser.feed(value);
          failures = 0;
        }
      } catch (err) {
        if (signal.aborted) return;
        if (err instanceof ApiError && err.status >= 400 && err.status < 500) throw err;
        failures += 1;
        if (failures > 5) throw networkError(err);
      }
      if (ended) return;
      await new Promise((r) => setTimeout(r, Math.min(500 * 2 ** failures, 5000)));
    }
  }
}

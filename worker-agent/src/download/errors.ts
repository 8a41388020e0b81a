// The downloader's failures, and the one rule for logging its URLs.

/** The file does not match the expected size or sha256. Never retried: the partial is deleted. */
export class IntegrityError extends Error {
  override readonly name = 'IntegrityError';
  constructor(
    message: string,
    readonly url: string,
  ) {
    super(message);
  }
}

/** The server answered with an HTTP status we do not retry (4xx other than 408/429) or retries ran out. */
export class HttpStatusError extends Error {
  override readonly name = 'HttpStatusError';
  constructor(
    readonly status: number,
    readonly url: string,
  ) {
    super(`download failed: HTTP ${status} from ${redactUrl(url)}`);
  }
  get retryable(): boolean {
    return this.status >= 500 || this.status === 408 || this.status === 429;
  }
}

/** A failure worth another attempt (connection cut, stalled transfer, short body). Keeps the partial file. */
export class TransientDownloadError extends Error {
  override readonly name = 'TransientDownloadError';
}

/** A SAS URL carries its signature in the query string: never log it. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.origin}${u.pathname}${u.search ? '?<redacted>' : ''}`;
  } catch {
    return '<invalid url>';
  }
}

export function toError(reason: unknown): Error {
  return reason instanceof Error ? reason : new Error(String(reason));
}

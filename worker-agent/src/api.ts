// The agent's side of the machine API: claim, job events and heartbeats, with the machine token.
//
// Network errors, timeouts, 5xx, 408 and 429 are retried with exponential backoff (p-retry); any other 4xx is an
// answer, returned to the caller as a Rejection (409 = the job moved on). Outcome reports use `retries: Infinity`:
// an outcome is never dropped while the process lives (and the outbox keeps it across restarts).
import pRetry, { AbortError as RetryAbort } from 'p-retry';
import { ApiClient, ApiRequestError } from '../../api-client/index.js';
import {
  claimResponseSchema,
  downloadUrlResponseSchema,
  jobEventResponseSchema,
  type ClaimResponse,
  type DownloadUrlResponse,
  type JobEventInput,
  type JobEventResponse,
} from '../../contract/jobs.js';
import { heartbeatResponseSchema, type Heartbeat, type HeartbeatResponse } from '../../contract/machines.js';
import { outputUploadResponseSchema, type OutputUploadRequest, type OutputUploadResponse } from '../../contract/outputs.js';
import type { Logger } from './logger.js';

/** A definite answer other than success: the caller decides what it means. */
export interface Rejection {
  ok: false;
  status: number;
  code: string;
  message: string;
  details?: unknown;
}
export type Answer<T> = { ok: true; value: T } | Rejection;

export interface RetryPolicy {
  /** Retries after the first attempt. Infinity for outcomes. */
  retries: number;
  minDelayMs?: number;
  maxDelayMs?: number;
  /** Stops retrying (and the request in flight) when aborted. */
  signal?: AbortSignal;
}

/** What the agent needs from the control plane (a fake in tests). */
export interface ControlPlaneApi {
  /** `traceparent`: the agent's claim span, so the server's span joins the job's trace. */
  claim(jobId: string, epoch: number, policy: RetryPolicy, traceparent?: string): Promise<Answer<ClaimResponse>>;
  event(jobId: string, event: JobEventInput, policy: RetryPolicy): Promise<Answer<JobEventResponse>>;
  heartbeat(hb: Heartbeat, policy: RetryPolicy): Promise<Answer<HeartbeatResponse>>;
  /** Swaps the machine token (optional: fakes in tests need not). */
  setToken?(token: string): void;
  /** A fresh read URL for one LoRA of the job this machine runs at `epoch` (409: the attempt moved on). */
  downloadUrl?(jobId: string, epoch: number, key: string, policy: RetryPolicy): Promise<Answer<DownloadUrlResponse>>;
  /** Write-only upload URLs for this attempt's output files (409: the attempt moved on; 413: over the limits). */
  outputUploads(jobId: string, body: OutputUploadRequest, policy: RetryPolicy): Promise<Answer<OutputUploadResponse>>;
}

/** A download outlasted its short-lived URL: a fresh one, given only while this machine holds the attempt. */
export async function freshDownloadUrl(api: ControlPlaneApi, jobId: string, epoch: number, key: string, signal: AbortSignal): Promise<string> {
  if (!api.downloadUrl) throw new Error('download URL expired and this control plane client cannot refresh it');
  const answer = await api.downloadUrl(jobId, epoch, key, { retries: 4, maxDelayMs: 5_000, signal });
  if (answer instanceof Error) throw answer;
  if (!answer.ok) throw new Error(`no fresh download URL for ${key}: ${answer.message}`);
  return answer.value.download_url;
}

export const isRetryableStatus = (status: number): boolean => status >= 500 || status === 408 || status === 429;

export class HttpControlPlane implements ControlPlaneApi {
  private client: ApiClient;
  constructor(
    private readonly opts: {
      baseUrl: string;
      token: string;
      machineId: string;
      log: Logger;
      requestTimeoutMs?: number;
      /** Called with a rotated token from a heartbeat answer, after the agent switched to it (to keep it for restarts). */
      onTokenRotated?: (token: string) => void;
    },
  ) {
    this.client = new ApiClient({ baseUrl: opts.baseUrl, token: opts.token });
  }

  /** Uses a new machine token from now on (re-read from its file after a 401). */
  setToken(token: string): void {
    this.client = this.client.withToken(token);
  }

  claim(jobId: string, epoch: number, policy: RetryPolicy, traceparent?: string): Promise<Answer<ClaimResponse>> {
    const body = { machine_id: this.opts.machineId, epoch, ...(traceparent ? { traceparent } : {}) };
    return this.call('claim', `jobs/${encodeURIComponent(jobId)}/claim`, body, policy, (v) =>
      claimResponseSchema.parse(v),
    );
  }

  downloadUrl(jobId: string, epoch: number, key: string, policy: RetryPolicy): Promise<Answer<DownloadUrlResponse>> {
    const body = { machine_id: this.opts.machineId, epoch, key };
    return this.call('download-url', `jobs/${encodeURIComponent(jobId)}/download-url`, body, policy, (v) => downloadUrlResponseSchema.parse(v));
  }

  event(jobId: string, event: JobEventInput, policy: RetryPolicy): Promise<Answer<JobEventResponse>> {
    return this.call(`event:${event.type}`, `jobs/${encodeURIComponent(jobId)}/events`, event, policy, (v) => jobEventResponseSchema.parse(v));
  }

  async heartbeat(hb: Heartbeat, policy: RetryPolicy): Promise<Answer<HeartbeatResponse>> {
    const answer = await this.call('heartbeat', `machines/${encodeURIComponent(this.opts.machineId)}/heartbeat`, hb, policy, (v) =>
      heartbeatResponseSchema.parse(v),
    );
    const rotated = answer.ok ? answer.value.machine_token : undefined;
    if (rotated) {
      // Self-rotation before expiry: every later request uses the fresh token.
      this.client = this.client.withToken(rotated.token);
      this.opts.log.info({ expires_at: rotated.expires_at }, 'machine token rotated');
      try {
        this.opts.onTokenRotated?.(rotated.token);
      } catch (err) {
        this.opts.log.warn({ err: (err as Error).message }, 'could not keep the rotated machine token; a restart will use the configured one');
      }
    }
    return answer;
  }

  outputUploads(jobId: string, body: OutputUploadRequest, policy: RetryPolicy): Promise<Answer<OutputUploadResponse>> {
    return this.call('outputs', `jobs/${encodeURIComponent(jobId)}/outputs/uploads`, body, policy, (v) => outputUploadResponseSchema.parse(v));
  }

  private async call<T>(what: string, path: string, body: unknown, policy: RetryPolicy, parse: (v: unknown) => T): Promise<Answer<T>> {
    const timeoutMs = this.opts.requestTimeoutMs ?? 30_000;
    return pRetry(
      async () => {
        const signal = policy.signal ? AbortSignal.any([policy.signal, AbortSignal.timeout(timeoutMs)]) : AbortSignal.timeout(timeoutMs);
        try {
          const value = await this.client.request<unknown>('POST', path, { body, signal });
          return { ok: true as const, value: parse(value) };
        } catch (err) {
          if (policy.signal?.aborted) throw new RetryAbort(toError(policy.signal.reason));
          if (err instanceof ApiRequestError) {
            if (isRetryableStatus(err.status)) throw err;
            const details = (err.body as { error?: { details?: unknown } } | undefined)?.error?.details;
            throw new RetryAbort(new RejectionError({ ok: false, status: err.status, code: err.code, message: err.message, details }));
          }
          if ((err as Error)?.name === 'ZodError') throw new RetryAbort(new Error(`${what}: unexpected response body: ${(err as Error).message}`));
          // fetch failures (TypeError 'fetch failed'), timeouts (TimeoutError): worth another attempt
          throw err instanceof TypeError ? new NetworkError((err as Error).message, { cause: err }) : err;
        }
      },
      {
        retries: policy.retries,
        minTimeout: policy.minDelayMs ?? 250,
        maxTimeout: policy.maxDelayMs ?? 15_000,
        factor: 2,
        randomize: true,
        signal: policy.signal,
        unref: true,
        onFailedAttempt: ({ error, attemptNumber, retriesLeft }) => {
          this.opts.log.warn({ what, attempt: attemptNumber, retries_left: retriesLeft, err: error.message }, 'control plane call failed; retrying');
        },
      },
    ).catch((err: unknown) => {
      if (err instanceof RejectionError) return err.rejection;
      throw err;
    });
  }
}

class RejectionError extends Error {
  constructor(readonly rejection: Rejection) {
    super(rejection.message);
  }
}

/** Not a TypeError, so p-retry retries it (it only retries TypeErrors it recognises as network errors). */
class NetworkError extends Error {
  override readonly name = 'NetworkError';
}

function toError(reason: unknown): Error {
  return reason instanceof Error ? reason : new Error(String(reason));
}

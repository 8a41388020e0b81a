// A small client for the public HTTP API, shared by the CLI, the worker agent, the demo and the tests. It sits below
// both the CLI and the agent (see the layering table in README.md).
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

export class ApiRequestError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly body: unknown,
  ) {
    super(message);
    this.name = 'ApiRequestError';
  }
}

export interface ApiClientOptions {
  baseUrl: string;
  token?: string;
}

export class ApiClient {
  constructor(readonly options: ApiClientOptions) {}

  withToken(token: string): ApiClient {
    return new ApiClient({ ...this.options, token });
  }

  url(path: string): string {
    return `${this.options.baseUrl.replace(/\/+$/, '')}/${path.replace(/^\/+/, '')}`;
  }

  async raw(method: string, path: string, init: { body?: unknown; headers?: Record<string, string>; signal?: AbortSignal } = {}): Promise<Response> {
    const headers: Record<string, string> = { ...init.headers };
    if (this.options.token) headers.authorization = `Bearer ${this.options.token}`;
    let body: RequestInit['body'];
    if (init.body !== undefined) {
      if (typeof init.body === 'string' || init.body instanceof Uint8Array || init.body instanceof FormData) {
        body = init.body as RequestInit['body'];
      } else {
        body = JSON.stringify(init.body);
        headers['content-type'] ??= 'application/json';
      }
    }
    return fetch(this.url(path), { method, headers, body, signal: init.signal });
  }

  /** JSON request; non-2xx becomes ApiRequestError carrying the contract's error code. */
  async request<T>(method: string, path: string, init: { body?: unknown; headers?: Record<string, string>; signal?: AbortSignal } = {}): Promise<T> {
    const res = await this.raw(method, path, init);
    const text = await res.text();
    let parsed: unknown = undefined;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      parsed = text;
    }
    if (!res.ok) {
      const err = (parsed as { error?: { code?: string; message?: string } } | undefined)?.error;
      throw new ApiRequestError(res.status, err?.code ?? 'http_error', err?.message ?? `HTTP ${res.status}`, parsed);
    }
    return parsed as T;
  }

  get<T>(path: string) {
    return this.request<T>('GET', path);
  }
  post<T>(path: string, body?: unknown, headers?: Record<string, string>) {
    return this.request<T>('POST', path, { body: body ?? {}, headers });
  }
  delete<T>(path: string) {
    return this.request<T>('DELETE', path);
  }
}

/** Where the API is: --api, LORA_ROUTER_API, the running local stack (.local/stack.json), else localhost:7071. */
export function resolveApiBase(flag?: string, root = process.cwd()): string {
  if (flag) return flag;
  if (process.env.LORA_ROUTER_API) return process.env.LORA_ROUTER_API;
  const stack = join(root, '.local', 'stack.json');
  if (existsSync(stack)) {
    try {
      return (JSON.parse(readFileSync(stack, 'utf8')) as { api_base_url: string }).api_base_url;
    } catch {
      /* fall through */
    }
  }
  return 'http://127.0.0.1:7071/api';
}

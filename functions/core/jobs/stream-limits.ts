// Caps on open server-sent event streams: each stream polls Cosmos about twice a second for up to 5 minutes, so one
// tenant (or everyone together) opening thousands would cost RU and sockets without bound. Counted per host instance
// (streams live in one process); past a cap the request gets a 429 that says which cap and how to do without.
import { ApiError } from '../errors.js';

export interface StreamCaps {
  perTenant: number;
  global: number;
}

export class StreamLimiter {
  private total = 0;
  private readonly byTenant = new Map<string, number>();

  /** Takes a slot or throws a 429; the returned release is safe to call more than once. */
  acquire(tenantId: string, caps: StreamCaps): () => void {
    const mine = this.byTenant.get(tenantId) ?? 0;
    const details = { tenant_streams: mine, tenant_max: caps.perTenant, server_streams: this.total, server_max: caps.global };
    const alternative = 'close one, or poll GET /api/jobs/{id}/events?after=<seq> instead';
    if (mine >= caps.perTenant) {
      throw new ApiError('too_many_requests', `too many open event streams for your account (${mine} of ${caps.perTenant}); ${alternative}`, details, { 'Retry-After': '5' });
    }
    if (this.total >= caps.global) {
      throw new ApiError('too_many_requests', `this server has too many open event streams (${this.total} of ${caps.global}); retry shortly, or ${alternative}`, details, { 'Retry-After': '5' });
    }
    this.total += 1;
    this.byTenant.set(tenantId, mine + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.total -= 1;
      const left = (this.byTenant.get(tenantId) ?? 1) - 1;
      if (left > 0) this.byTenant.set(tenantId, left);
      else this.byTenant.delete(tenantId);
    };
  }

  get open(): number {
    return this.total;
  }
}

/** One per process: every SSE request of this host instance counts against it. */
export const streamLimiter = new StreamLimiter();

// What the agent does when the control plane refuses its machine token (401): the machine was re-registered (token
// rotated) or deregistered. Every refused heartbeat re-reads the token file; a new token there is used at once, so an
// agent whose file is updated recovers by itself. Refused for longer than the grace period: give up (the agent then
// drains and exits 78, which systemd does not restart).
import type { Logger } from './logger.js';

export type RefusalVerdict = 'new_token' | 'waiting' | 'give_up';

export class TokenWatch {
  private refusedSince: number | undefined;

  constructor(
    private current: string | null,
    private readonly opts: { reload?: () => string | null; apply?: (token: string) => void; graceMs: number; log: Logger; now?: () => number },
  ) {}

  accepted(): void {
    this.refusedSince = undefined;
  }

  refused(): RefusalVerdict {
    const fresh = this.opts.reload?.() ?? null;
    if (fresh && fresh !== this.current && this.opts.apply) {
      this.current = fresh;
      this.opts.apply(fresh);
      this.refusedSince = undefined;
      this.opts.log.warn({}, 'machine token was replaced; using the new token from the token file');
      return 'new_token';
    }
    const now = (this.opts.now ?? Date.now)();
    this.refusedSince ??= now;
    return now - this.refusedSince < this.opts.graceMs ? 'waiting' : 'give_up';
  }
}

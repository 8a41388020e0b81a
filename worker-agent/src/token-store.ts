// The machine token the agent uses, across rotations and restarts. Tokens expire (MACHINE_TOKEN_TTL_MINUTES on the
// control plane); a heartbeat answer carries a fresh one once half the lifetime has passed. The agent keeps the
// newest in STATE_DIR/machine-token (0600, readable by the agent user only) and, on start, uses whichever of that
// and the configured token expires last, so a restart after a rotation does not fall back to an expired token.
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** The token's `exp` (epoch seconds), read without verifying (the control plane verifies); 0 when unreadable. */
export function tokenExpiry(token: string): number {
  try {
    const payload = JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString('utf8')) as { exp?: unknown };
    return typeof payload.exp === 'number' ? payload.exp : 0;
  } catch {
    return 0;
  }
}

export class TokenStore {
  /** STATE_DIR/machine-token: main.ts refuses to start when the job user could read it. */
  readonly path: string;
  constructor(stateDir: string) {
    this.path = join(stateDir, 'machine-token');
  }

  /** The configured token, or the stored rotation of it when that one lives longer. */
  pick(configured: string): string {
    let stored: string | undefined;
    try {
      stored = readFileSync(this.path, 'utf8').trim();
    } catch {
      return configured;
    }
    return stored && tokenExpiry(stored) > tokenExpiry(configured) ? stored : configured;
  }

  save(token: string): void {
    const tmp = `${this.path}.tmp`;
    writeFileSync(tmp, `${token}\n`, { mode: 0o600 });
    renameSync(tmp, this.path);
  }
}

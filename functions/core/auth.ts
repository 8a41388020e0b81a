// Bearer JWT verification for users, admins and machines (jose, no hand-rolled crypto).
// - Users/admins: Entra ID tokens (RS256 via the tenant's JWKS) in Azure; HS256 dev tokens signed with AUTH_DEV_SECRET
//   locally. Same code path, only the key source differs.
// - Machines: HS256 tokens we issue at registration (MACHINE_TOKEN_SECRET), carrying a version so rotation revokes.
import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify, SignJWT, type JWTPayload } from 'jose';
import { tenantIdSchema } from '../../contract/ids.js';
import type { AuthConfig } from './config.js';
import { forbidden, unauthorized } from './errors.js';

export type Role = 'user' | 'admin' | 'machine';
export interface Principal {
  role: Role;
  /** Token subject: the user id (= tenant) or the machine id. */
  subject: string;
  /** Users' data is partitioned by this; equals subject. */
  tenantId: string;
  /** Machine tokens only: must equal the machine record's token_version. */
  tokenVersion?: number;
  /** Machine tokens only: when the token expires (epoch seconds). */
  expiresAt?: number;
}

const LOCAL_ISSUER = 'lora-router-local';
const MACHINE_ISSUER = 'lora-router-machines';
const AUDIENCE = 'lora-router';
const encoder = new TextEncoder();

export async function issueDevToken(
  secret: string,
  subject: string,
  role: Exclude<Role, 'machine'>,
  ttlSeconds = 12 * 3600,
): Promise<string> {
  return new SignJWT({ role })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setSubject(subject)
    .setIssuer(LOCAL_ISSUER)
    .setAudience(AUDIENCE)
    .setIssuedAt()
    .setExpirationTime(`${ttlSeconds}s`)
    .sign(encoder.encode(secret));
}

export interface IssuedMachineToken {
  token: string;
  /** ISO time the token stops being accepted. */
  expires_at: string;
}

/** A machine token that expires after `ttlSeconds`; the agent swaps it for a fresh one (heartbeat) before then. */
export async function issueMachineToken(secret: string, machineId: string, version: number, ttlSeconds: number, nowMs = Date.now()): Promise<IssuedMachineToken> {
  const iat = Math.floor(nowMs / 1000);
  const exp = iat + ttlSeconds;
  const token = await new SignJWT({ role: 'machine', ver: version })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setSubject(machineId)
    .setIssuer(MACHINE_ISSUER)
    .setAudience(AUDIENCE)
    .setIssuedAt(iat)
    .setExpirationTime(exp)
    .sign(encoder.encode(secret));
  return { token, expires_at: new Date(exp * 1000).toISOString() };
}

export class Authenticator {
  private jwks?: ReturnType<typeof createRemoteJWKSet>;
  constructor(private readonly config: AuthConfig) {}

  /** Returns the caller or throws 401. */
  async authenticate(authorization: string | null | undefined): Promise<Principal> {
    const match = /^Bearer\s+([A-Za-z0-9._~+/=-]+)$/i.exec(authorization?.trim() ?? '');
    if (!match) throw unauthorized('missing bearer token: send Authorization: Bearer <token>');
    const token = match[1]!;
    let alg: string | undefined;
    try {
      alg = decodeProtectedHeader(token).alg;
    } catch {
      throw unauthorized('malformed bearer token');
    }
    try {
      if (alg === 'HS256') return await this.verifyHmac(token);
      if (this.config.mode === 'entra') return await this.verifyEntra(token);
    } catch (err) {
      if (err instanceof Error && err.name === 'ApiError') throw err;
      throw unauthorized(`invalid bearer token (${(err as { code?: string }).code ?? 'verification failed'})`);
    }
    throw unauthorized('invalid bearer token (unexpected algorithm)');
  }

  private async verifyHmac(token: string): Promise<Principal> {
    // Machine tokens first (both modes); local user/admin dev tokens only in local mode.
    const machineKey = encoder.encode(this.config.machineTokenSecret);
    try {
      const { payload } = await jwtVerify(token, machineKey, { issuer: MACHINE_ISSUER, audience: AUDIENCE, algorithms: ['HS256'] });
      return principalFrom(payload, 'machine');
    } catch (err) {
      if (this.config.mode !== 'local') throw err;
    }
    const { payload } = await jwtVerify(token, encoder.encode(this.config.devSecret), {
      issuer: LOCAL_ISSUER,
      audience: AUDIENCE,
      algorithms: ['HS256'],
    });
    return principalFrom(payload, payload.role === 'admin' ? 'admin' : 'user');
  }

  private async verifyEntra(token: string): Promise<Principal> {
    if (this.config.mode !== 'entra') throw unauthorized();
    this.jwks ??= createRemoteJWKSet(new URL(this.config.jwksUri));
    const { payload } = await jwtVerify(token, this.jwks, {
      issuer: this.config.issuer,
      audience: this.config.audience,
      algorithms: ['RS256'],
    });
    const roles = Array.isArray(payload.roles) ? (payload.roles as unknown[]) : [];
    // Entra's `oid` is stable across apps; fall back to `sub`.
    const subject = typeof payload.oid === 'string' ? payload.oid : payload.sub;
    return principalFrom({ ...payload, sub: subject }, roles.includes(this.config.adminRole) ? 'admin' : 'user');
  }
}

function principalFrom(payload: JWTPayload, role: Role): Principal {
  const subject = tenantIdSchema.safeParse(payload.sub);
  if (!subject.success) throw unauthorized('token subject is missing or has unsupported characters');
  const principal: Principal = { role, subject: subject.data, tenantId: subject.data };
  if (role === 'machine') {
    if (typeof payload.ver !== 'number') throw unauthorized('machine token without version');
    // Tokens issued before lifetimes existed carry no exp: refused, so every live token expires.
    if (typeof payload.exp !== 'number') throw unauthorized('machine token without expiry; re-register the machine');
    principal.tokenVersion = payload.ver;
    principal.expiresAt = payload.exp;
  }
  return principal;
}

/** Throws 403 unless the caller has one of the roles. Admins may do what users do. */
export function requireRole(principal: Principal, ...roles: Role[]): void {
  if (roles.includes(principal.role)) return;
  if (principal.role === 'admin' && roles.includes('user')) return;
  throw forbidden(`this endpoint needs the ${roles.join(' or ')} role; the token has ${principal.role}`);
}

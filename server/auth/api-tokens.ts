// Operator API tokens with roles: viewer (read), operator (push, assign, campaigns), admin (keys,
// devices, tokens, audit). Stored as SHA-256 digests; revocation takes effect on the next request.
import { z } from 'zod';
import type { Db } from '../db/database.ts';
import { AppError } from '../errors.ts';
import { looksLikeSecret, newId, newSecret, secretDigest } from './secrets.ts';

import { Role } from '../../shared/api/access.ts';
export { Role };
const RANK: Record<Role, number> = { viewer: 1, operator: 2, admin: 3 };
export const roleAtLeast = (have: Role, need: Role) => RANK[have] >= RANK[need];

export interface ApiTokenRow {
  token_id: string; name: string; role: Role; token_sha256: string; created_by: string; created_at: string;
  expires_at: string | null; revoked_at: string | null; last_used_at: string | null;
}

export interface TokenPrincipal { kind: 'token'; tokenId: string; name: string; role: Role }

export function tokenView(r: ApiTokenRow) {
  return { tokenId: r.token_id, name: r.name, role: r.role, createdBy: r.created_by, createdAt: r.created_at, expiresAt: r.expires_at, revokedAt: r.revoked_at, lastUsedAt: r.last_used_at };
}

export class ApiTokens {
  private readonly touched = new Map<string, number>();

  constructor(private readonly db: Db, private readonly now: () => Date = () => new Date()) {}

  /** Make a token; the plaintext is returned once and never stored. */
  create(opts: { name: string; role: Role; ttlDays?: number; createdBy: string; secret?: string }): { token: string; row: ApiTokenRow } {
    const token = opts.secret ?? newSecret('apiToken');
    const now = this.now();
    const row: ApiTokenRow = {
      token_id: newId(), name: opts.name, role: opts.role, token_sha256: secretDigest(token), created_by: opts.createdBy,
      created_at: now.toISOString(), expires_at: opts.ttlDays ? new Date(now.getTime() + opts.ttlDays * 86_400_000).toISOString() : null,
      revoked_at: null, last_used_at: null,
    };
    this.db.prepare(`INSERT INTO api_tokens (token_id, name, role, token_sha256, created_by, created_at, expires_at)
      VALUES (@token_id, @name, @role, @token_sha256, @created_by, @created_at, @expires_at)`).run(row);
    return { token, row };
  }

  /**
   * The operator's first token: `bootstrapAdminToken` from config (FLEET_BOOTSTRAP_TOKEN) is stored
   * (hashed) as an admin token unless a token with that digest exists. Returns true if it was added.
   */
  bootstrap(secret: string): boolean {
    if (!looksLikeSecret(secret, 'apiToken')) throw new Error(`bootstrapAdminToken must look like fleet_at_<43 base64url characters> (make one with: fleet-server token)`);
    const known = this.db.prepare('SELECT 1 FROM api_tokens WHERE token_sha256 = ?').get(secretDigest(secret));
    if (known) return false;
    this.create({ name: 'bootstrap-admin', role: 'admin', createdBy: 'server', secret });
    return true;
  }

  count(): number {
    return (this.db.prepare('SELECT COUNT(*) AS n FROM api_tokens WHERE revoked_at IS NULL').get() as { n: number }).n;
  }

  /** The principal a bearer token stands for, or null (unknown, revoked or expired). */
  verify(token: string): TokenPrincipal | null {
    if (!looksLikeSecret(token, 'apiToken')) return null;
    // lookup by digest: the digest of a 256-bit random secret tells an attacker nothing
    const row = this.db.prepare('SELECT * FROM api_tokens WHERE token_sha256 = ?').get(secretDigest(token)) as ApiTokenRow | undefined;
    if (!row || row.revoked_at) return null;
    const now = this.now();
    if (row.expires_at && Date.parse(row.expires_at) <= now.getTime()) return null;
    const last = this.touched.get(row.token_id) ?? 0;
    if (now.getTime() - last > 60_000) {
      this.touched.set(row.token_id, now.getTime());
      this.db.prepare('UPDATE api_tokens SET last_used_at = ? WHERE token_id = ?').run(now.toISOString(), row.token_id);
    }
    return { kind: 'token', tokenId: row.token_id, name: row.name, role: row.role };
  }

  list(): ApiTokenRow[] {
    return this.db.prepare('SELECT * FROM api_tokens ORDER BY created_at, token_id').all() as ApiTokenRow[];
  }

  revoke(tokenId: string): ApiTokenRow {
    const row = this.db.prepare('SELECT * FROM api_tokens WHERE token_id = ?').get(tokenId) as ApiTokenRow | undefined;
    if (!row) throw new AppError('FLEET_ERR_TOKEN_NOT_FOUND', `no token ${tokenId}`, 404);
    if (!row.revoked_at) this.db.prepare('UPDATE api_tokens SET revoked_at = ? WHERE token_id = ?').run(this.now().toISOString(), tokenId);
    return this.db.prepare('SELECT * FROM api_tokens WHERE token_id = ?').get(tokenId) as ApiTokenRow;
  }
}

// Bearer secrets: 32 random bytes, base64url, with a prefix that says what the secret is (so a leaked
// one is recognisable and the server knows which table to look in). Only SHA-256 digests are stored;
// comparisons are between fixed-length digests (timingSafeEqual throws on unequal lengths).
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

export const SECRET_PREFIX = { apiToken: 'fleet_at_', deviceSecret: 'fleet_ds_', enrollment: 'fleet_et_' } as const;
export type SecretKind = keyof typeof SECRET_PREFIX;

export function newSecret(kind: SecretKind): string {
  return SECRET_PREFIX[kind] + randomBytes(32).toString('base64url');
}

export function newId(): string {
  return randomBytes(8).toString('hex');
}

export function secretDigest(secret: string): string {
  return createHash('sha256').update(secret, 'utf8').digest('hex');
}

/** Constant-time comparison of two SHA-256 hex digests. */
export function digestsEqual(a: string, b: string): boolean {
  const x = Buffer.from(a, 'hex');
  const y = Buffer.from(b, 'hex');
  return x.length === 32 && y.length === 32 && timingSafeEqual(x, y);
}

/** Only plausible secrets get hashed and looked up (bounded length, one alphabet). */
export function looksLikeSecret(s: string, kind: SecretKind): boolean {
  return s.startsWith(SECRET_PREFIX[kind]) && s.length <= 128 && /^[A-Za-z0-9_-]+$/.test(s);
}

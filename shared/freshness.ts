// Freeze detection (TUF's timestamp role): the server signs a short-lived statement "the fleet's
// authority was alive at issuedAt, believe this until expires" and publishes it, retained, on one
// fleet-wide topic at an interval. A device that has not accepted a newer one for a while knows that
// someone (the broker, the network) may be holding back updates from it, and says so. Pure: verifying
// a statement and judging staleness; the server's publisher and the agent's watch do the I/O.
import { z } from 'zod';
import { keyIdOf } from './crypto.ts';
import { parseSigned } from './envelope.ts';
import { IsoTime } from './ids.ts';
import { Envelope } from './messages.ts';
import { UpdateRefused } from './reason-codes.ts';
import { checkSignedBy, verifyKeySet, type SignatureCache, type TrustState } from './verify-desired.ts';

export const FreshnessStatement = z.object({
  type: z.literal('freshness'),
  issuedAt: IsoTime,
  expires: IsoTime,
  /** the key set the signer belongs to (the message carries it, as desired states do) */
  keysetVersion: z.number().int().positive(),
}).strict();
export type FreshnessStatement = z.infer<typeof FreshnessStatement>;

/** What the server publishes, retained, on topics.freshness(). Signed with a director key. */
export const FreshnessMessage = z.object({ keyset: Envelope, statement: Envelope }).strict();
export type FreshnessMessage = z.infer<typeof FreshnessMessage>;

/** What a device reports about it (presence, local status) and the server shows. */
export const FreshnessView = z.object({
  stale: z.boolean(),
  /** until when the device believes it is fresh (null: it has not accepted a statement since it started) */
  freshUntil: IsoTime.nullable(),
}).strict();
export type FreshnessView = z.infer<typeof FreshnessView>;

/**
 * Accept a statement only if its key set is signed by the pinned root (and not older than trusted), it is
 * signed by a director key of that set, it has not expired, and it is newer than the last one accepted
 * (a replayed old statement refreshes nothing).
 */
export function verifyFreshness(msg: FreshnessMessage, trust: TrustState, now: number, lastIssuedAt: number, cache?: SignatureCache): FreshnessStatement {
  const at = Math.max(now, trust.timeFloor);
  const keyset = verifyKeySet(msg.keyset, trust, at, cache);
  checkSignedBy(msg.statement, keyset, 'director', 'freshness statement', keyIdOf(trust.rootPublicKey), cache);
  const s = parseSigned(msg.statement, FreshnessStatement, 'freshness statement');
  if (s.keysetVersion !== keyset.version) throw new UpdateRefused('MALFORMED', `freshness statement names key set v${s.keysetVersion}, delivered v${keyset.version}`);
  if (Date.parse(s.expires) <= at) throw new UpdateRefused('EXPIRED', `freshness statement expired at ${s.expires}`);
  if (Date.parse(s.issuedAt) <= lastIssuedAt) throw new UpdateRefused('REPLAYED', `freshness statement of ${s.issuedAt} is not newer than the last one accepted`);
  return s;
}

/**
 * Fresh until the earlier of the statement's expiry and acceptedAt + maxAgeMs; before any statement,
 * for maxAgeMs after start (a device just booted is not stale yet).
 */
export function freshUntil(last: { acceptedAt: number; expires: number } | null, startedAt: number, maxAgeMs: number): number {
  return last ? Math.min(last.expires, last.acceptedAt + maxAgeMs) : startedAt + maxAgeMs;
}

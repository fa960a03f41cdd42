// What the server does with a device's report about a plain (non-campaign) assignment, decided purely.
// An update a restart cut short (CRASH_RECOVERY) and a desired state refused only for being stale
// (EXPIRED, REPLAYED: a fresh signature and sequence number cure both) are assigned again, a bounded
// number of times; any other failure or refusal marks the assignment failed with the device's reason, and
// so does a revert of the model after it was switched to (the assignment was settled 'done' at the switch).
// Campaign assignments are the rollout engine's business (engine.ts, maxRetries).
import type { Status } from '../../shared/messages.ts';
import type { ReasonCode } from '../../shared/reason-codes.ts';

export interface PlainAssignment { manifestSha256: string; seq: number; attempts: number; state: 'assigned' | 'done' | 'failed' }

export type AssignmentStep =
  | { kind: 'ignore' }
  | { kind: 'done' }
  | { kind: 'retry'; attempt: number; reason: ReasonCode }
  | { kind: 'fail'; reason: ReasonCode | null };

const RETRY_FAILED: ReadonlySet<string> = new Set<ReasonCode>(['CRASH_RECOVERY']);
const RETRY_REJECTED: ReadonlySet<string> = new Set<ReasonCode>(['EXPIRED', 'REPLAYED']);

export function nextAssignmentStep(a: PlainAssignment | null, s: Status, maxAttempts: number): AssignmentStep {
  if (!a || a.state === 'failed') return { kind: 'ignore' };
  // about this assignment: its sequence number, or (a refusal before the director's signature was
  // checked carries none) its manifest
  const about = s.directorSeq !== undefined ? s.directorSeq === a.seq : s.manifestSha256 === a.manifestSha256;
  if (!about) return { kind: 'ignore' };
  // Settled at the switch ('active', sent before probation): a later revert of that model (probation
  // failed, or a crash on probation) means it did not take. Not retried: the device's version floor
  // already holds this version, and a model that failed its probation would fail it again.
  if (a.state === 'done') return s.state === 'reverted' && s.manifestSha256 === a.manifestSha256 ? { kind: 'fail', reason: s.reason ?? null } : { kind: 'ignore' };
  if (s.state === 'active' || s.state === 'probation_passed') return s.manifestSha256 === a.manifestSha256 ? { kind: 'done' } : { kind: 'ignore' };
  if (s.state !== 'failed' && s.state !== 'rejected' && s.state !== 'reverted') return { kind: 'ignore' };
  const reason = s.reason ?? null;
  const retryable = reason !== null && ((s.state === 'failed' && RETRY_FAILED.has(reason)) || (s.state === 'rejected' && RETRY_REJECTED.has(reason)));
  if (retryable && a.attempts < maxAttempts) return { kind: 'retry', attempt: a.attempts + 1, reason };
  return { kind: 'fail', reason };
}

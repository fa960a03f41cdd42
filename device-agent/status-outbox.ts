// Outcomes the server must hear about (failed, rejected, reverted, recovered after a crash, a damaged
// slot, active after an install) live in the state record until the broker acknowledges them (QoS 1
// PUBACK). They are queued into the record in memory and written by the same atomic, fsynced write as
// the change they report, so a crash can lose neither without the other; after a restart or a reconnect
// the rest is sent again. Each carries a per-device sequence number: the server stores (deviceId, seq)
// once, so a resend is harmless. Bounded: past STATUS_OUTBOX_MAX the oldest go first.
import type { Status } from '../shared/messages.ts';
import type { AgentState } from './state-store.ts';

export const STATUS_OUTBOX_MAX = 64;

/** Number the status and put it in the record's outbox (the caller saves the record). */
export function enqueueStatus(state: AgentState, status: Omit<Status, 'seq'>): Status {
  const queued: Status = { ...status, seq: ++state.statusSeq };
  state.outbox.push(queued);
  if (state.outbox.length > STATUS_OUTBOX_MAX) state.outbox.splice(0, state.outbox.length - STATUS_OUTBOX_MAX);
  return queued;
}

/** Drop an acknowledged status; false if it was not (or no longer) queued. */
export function ackStatus(state: AgentState, seq: number): boolean {
  const i = state.outbox.findIndex((s) => s.seq === seq);
  if (i < 0) return false;
  state.outbox.splice(i, 1);
  return true;
}

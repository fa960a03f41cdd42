// What a start finds on disk after a crash, decided purely: an update cut short is abandoned (its slot
// is cleared; the active model was never touched), and a model that was on probation when the agent
// died failed its probation (a crash is the strongest signal there is): go back to the previous slot.
import type { ReasonCode } from '../shared/reason-codes.ts';
import type { Status, UpdateState } from '../shared/messages.ts';
import type { AgentState, SlotName } from './state-store.ts';

export interface BootReport { state: UpdateState; extra: Partial<Status> & { reason: ReasonCode } }

export interface Recovery {
  state: AgentState;
  /** to send once the agent is connected */
  report: BootReport | null;
  /** slots no record points at: their files are leftovers */
  clearSlots: SlotName[];
}

export function planRecovery(current: AgentState, now: number): Recovery {
  const s: AgentState = structuredClone(current);
  let report: BootReport | null = null;
  if (s.update) {
    const u = s.update;
    report = {
      state: 'failed',
      extra: {
        reason: 'CRASH_RECOVERY', directorSeq: u.directorSeq, manifestSha256: u.manifestSha256, modelId: u.modelId, version: u.version,
        detail: `agent restarted during the update to ${u.modelId} v${u.version}; update abandoned, still on the model it ran before`,
      },
    };
    // (a slot the update had claimed has no record already; a download in staging touched none)
    if (u.slot && s.slots[u.slot] && s.active !== u.slot) s.slots[u.slot] = null;
    s.update = null;
  }
  if (s.probation) {
    const p = s.probation;
    const base = { directorSeq: p.directorSeq, manifestSha256: p.manifestSha256, modelId: p.modelId, version: p.version };
    if (p.cleanStop || s.active !== p.slot) {
      // stopped on purpose (or the record is stale): watch the model again from the start
      s.probation = s.active === p.slot ? { ...p, startedAt: now, cleanStop: false } : null;
    } else if (p.previous && s.slots[p.previous]) {
      s.slots[p.slot] = null;
      s.active = p.previous;
      s.previous = null;
      s.probation = null;
      report = {
        state: 'reverted',
        extra: { ...base, reason: 'CRASH_RECOVERY', detail: `agent restarted while ${p.modelId} v${p.version} was on probation; reverted to the previous model` },
      };
    } else {
      // nothing to go back to: this model passed its health check, so keep it and watch it again
      s.probation = { ...p, startedAt: now, cleanStop: false };
    }
  }
  const clearSlots = (['a', 'b'] as const).filter((slot) => !s.slots[slot]);
  if (s.active && !s.slots[s.active]) s.active = null;
  if (s.previous && !s.slots[s.previous]) s.previous = null;
  return { state: s, report, clearSlots };
}

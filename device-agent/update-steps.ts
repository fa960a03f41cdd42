// The update's changes to the state record, as pure functions from state to state (recovery.ts style):
// the agent computes the next record here, queues the outcome into it, writes it in one atomic write,
// then carries out the effects returned (clear a slot's files, swap the model in memory).
import { slotModels, type AgentState, type ProbationRecord, type RepairRecord, type SlotName, type SlotRecord } from './state-store.ts';

/** The inactive slot is about to be overwritten: the record stops naming it, and stops offering it as a revert target. */
export function claimSlot(current: AgentState, slot: SlotName): AgentState {
  const s = structuredClone(current);
  s.slots[slot] = null;
  if (s.previous === slot) s.previous = null;
  if (s.probation?.previous === slot) s.probation.previous = null;
  if (s.update) s.update.slot = slot;
  // a candidate held in shadow there goes with it (a promotion staged its bytes from the slot first)
  if (s.shadow?.slot === slot) s.shadow = null;
  return s;
}

/** The switch: `slot` becomes active, the model (or set) before it the previous one, each model's floor rises, probation opens. */
export function switchTo(current: AgentState, slot: SlotName, record: SlotRecord, previous: SlotName | null, probation: ProbationRecord | null): AgentState {
  const s = structuredClone(current);
  s.slots[slot] = record;
  s.previous = previous;
  s.active = slot;
  for (const m of slotModels(record)) s.trust.versionFloors[m.modelId] = Math.max(s.trust.versionFloors[m.modelId] ?? 0, m.version);
  s.update = null;
  s.probation = probation;
  return s;
}

/** An install that failed: the update record goes; the slot it had claimed (if any) is to be cleared. */
export function abandonUpdate(current: AgentState): { state: AgentState; clear: SlotName | null } {
  const s = structuredClone(current);
  const clear = s.update?.slot ?? null;
  s.update = null;
  return { state: s, clear };
}

/**
 * Probation failed. With a previous slot that verified and loaded: back to it, the failed slot cleared.
 * Without: the model on probation (it passed its health check) stays, and a revert target that did not
 * load is dropped from the record (and its files cleared) rather than named again.
 */
export function failProbation(current: AgentState, p: ProbationRecord, previousLoaded: boolean): { state: AgentState; outcome: 'reverted' | 'kept'; clear: SlotName | null } {
  const s = structuredClone(current);
  s.probation = null;
  if (p.previous && previousLoaded) {
    s.slots[p.slot] = null;
    s.active = p.previous;
    s.previous = null;
    return { state: s, outcome: 'reverted', clear: p.slot };
  }
  const dropped = p.previous && s.slots[p.previous] ? p.previous : null;
  if (dropped) {
    s.slots[dropped] = null;
    if (s.previous === dropped) s.previous = null;
  }
  return { state: s, outcome: 'kept', clear: dropped };
}

export type RepairOutcome = 'activated' | 'previous' | 'reverted' | 'failed';

/**
 * A repair job is over (slot-repair.ts). Fetched again and verified: the slot takes its role back (the
 * active model again, with what served meanwhile as the previous one; a revert target again; or, for the
 * revert target of a probation a crash cut short that is still under way, the model reverted to, the
 * one on probation cleared). Not fetched: the job goes and the slot's files are cleared.
 */
export function finishRepair(current: AgentState, job: RepairRecord, repaired: boolean): { state: AgentState; outcome: RepairOutcome; clear: SlotName[] } {
  const s = structuredClone(current);
  s.repairs = s.repairs.filter((r) => r.slot !== job.slot);
  if (!repaired || s.slots[job.slot] || s.update?.slot === job.slot) return { state: s, outcome: 'failed', clear: s.slots[job.slot] ? [] : [job.slot] };
  s.slots[job.slot] = job.record;
  const p = s.probation;
  if (job.role === 'revert' && p && s.active === p.slot) {
    s.slots[p.slot] = null;
    s.active = job.slot;
    s.previous = null;
    s.probation = null;
    return { state: s, outcome: 'reverted', clear: [p.slot] };
  }
  if (job.role === 'active' && s.active !== job.slot && !p) {
    s.previous = s.active;
    s.active = job.slot;
    return { state: s, outcome: 'activated', clear: [] };
  }
  if (!s.previous && s.active !== job.slot) s.previous = job.slot;
  if (p && !p.previous && p.slot !== job.slot) s.probation = { ...p, previous: job.slot };
  return { state: s, outcome: 'previous', clear: [] };
}

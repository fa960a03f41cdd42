// What a start finds on disk after a crash, decided purely from the state record and what the agent
// found when it checked each recorded slot's files (slot-repair.ts checkSlots: read only). Checks come
// before deletions, and nothing waits for the network:
// - an update cut short is abandoned (a slot it had claimed is cleared; the active model was never touched);
// - a model that was on probation when the agent died failed its probation (a crash is the strongest
//   signal there is): go back to the previous slot, but only if that slot verifies; otherwise keep the
//   model that passed its health check, watch it again, and say why (REVERT_TARGET_DAMAGED); a revert
//   target that can be fetched again becomes a repair job, reverted to once it is back;
// - an active slot that does not verify falls back to the previous one (SLOT_DAMAGED), or to nothing;
// - the record never keeps naming a slot that does not verify: a damaged slot whose signed manifest is
//   intact (`repairable`) leaves `slots` for `repairs`, fetched again after the start (agent.ts).
import type { ReasonCode } from '../shared/reason-codes.ts';
import type { Status, UpdateState } from '../shared/messages.ts';
import type { AgentState, RepairRecord, SlotName, SlotRecord } from './state-store.ts';

export interface BootReport { state: UpdateState; extra: Partial<Status> & { reason: ReasonCode } }

/** What the agent found in a recorded slot: bytes and manifest match the record, or not. */
export type SlotCheck = 'ok' | 'damaged';

export interface Recovery {
  state: AgentState;
  /** to queue in the same write as `state` (oldest first) */
  reports: BootReport[];
  /** slots no record points at: their files are leftovers */
  clearSlots: SlotName[];
}

const about = (r: SlotRecord) => ({ manifestSha256: r.manifestSha256, modelId: r.modelId, version: r.version });

/** `checks` defaults to 'ok' for every recorded slot; `repairable`: damaged slots whose signed manifest is intact. */
export function planRecovery(current: AgentState, now: number, checks: Partial<Record<SlotName, SlotCheck>> = {}, repairable: SlotName[] = []): Recovery {
  const s: AgentState = structuredClone(current);
  const reports: BootReport[] = [];
  const ok = (slot: SlotName | null): boolean => slot !== null && s.slots[slot] !== null && (checks[slot] ?? 'ok') === 'ok';
  const canRepair = (slot: SlotName | null): boolean => slot !== null && s.slots[slot] !== null && repairable.includes(slot);
  const repair = (slot: SlotName, role: RepairRecord['role'], why: string) => {
    s.repairs = [...s.repairs.filter((r) => r.slot !== slot), { slot, record: s.slots[slot]!, role, why: why.slice(0, 500) }];
  };
  if (s.update) {
    const u = s.update;
    reports.push({
      state: 'failed',
      extra: {
        reason: 'CRASH_RECOVERY', directorSeq: u.directorSeq, manifestSha256: u.manifestSha256, modelId: u.modelId, version: u.version,
        detail: `agent restarted during the update to ${u.modelId} v${u.version}; update abandoned, still on the model it ran before`,
      },
    });
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
    } else if (ok(p.previous)) {
      s.slots[p.slot] = null;
      s.active = p.previous!;
      s.previous = null;
      s.probation = null;
      reports.push({
        state: 'reverted',
        extra: { ...base, reason: 'CRASH_RECOVERY', detail: `agent restarted while ${p.modelId} v${p.version} was on probation; reverted to the previous model` },
      });
    } else if (ok(p.slot)) {
      // nothing sound to go back to: this model passed its health check, so keep it and watch it again
      s.probation = { ...p, startedAt: now, cleanStop: false, previous: null };
      if (p.previous && s.slots[p.previous]) {
        const prev = s.slots[p.previous]!;
        const fetching = canRepair(p.previous);
        if (fetching) repair(p.previous, 'revert', 'revert target did not verify at start');
        reports.push({
          state: 'active',
          extra: { ...base, reason: 'REVERT_TARGET_DAMAGED', detail: fetching
            ? `agent restarted while ${p.modelId} v${p.version} was on probation; the previous model (${prev.modelId} v${prev.version}, slot ${p.previous}) does not verify: this one serves while it is fetched again, then the device reverts to it`
            : `agent restarted while ${p.modelId} v${p.version} was on probation; the previous model (${prev.modelId} v${prev.version}, slot ${p.previous}) does not verify, so this one stays and is watched again` },
        });
        s.slots[p.previous] = null;
        if (s.previous === p.previous) s.previous = null;
      }
    } else {
      s.probation = null; // the model on probation is damaged as well: handled as a damaged active slot
    }
  }
  if (s.active && !ok(s.active)) {
    const bad = s.slots[s.active];
    const fallback = ok(s.previous) ? s.previous : null;
    if (bad) {
      const fetching = canRepair(s.active);
      if (fetching) repair(s.active, 'active', 'active slot did not verify at start');
      const what = `slot ${s.active} (${bad.modelId} v${bad.version}) does not verify`;
      const then = fetching ? 'it is being fetched again' : 'its signed manifest is damaged too, so it cannot be fetched again';
      reports.push(fallback
        ? { state: 'reverted', extra: { ...about(bad), reason: 'SLOT_DAMAGED', detail: `${what}; back on the previous model while ${then}` } }
        : { state: 'failed', extra: { ...about(bad), reason: 'SLOT_DAMAGED', detail: `${what} and ${then}; no model to serve${fetching ? ' until it is back' : ''}` } });
    }
    if (s.probation?.slot === s.active) s.probation = null;
    s.active = fallback;
    s.previous = null;
  }
  for (const slot of ['a', 'b'] as const) {
    const r = s.slots[slot];
    if (!r || ok(slot)) continue;
    if (slot === s.previous) {
      const fetching = canRepair(slot);
      if (fetching) repair(slot, 'previous', 'previous slot did not verify at start');
      reports.push({ state: 'active', extra: { reason: 'SLOT_DAMAGED', detail: fetching
        ? `previous slot ${slot} (${r.modelId} v${r.version}) does not verify; fetched again in the background, no revert target until then`
        : `previous slot ${slot} (${r.modelId} v${r.version}) does not verify; dropped, nothing to revert to` } });
    }
    s.slots[slot] = null;
  }
  // a slot being repaired keeps its signed manifest on disk
  const clearSlots = (['a', 'b'] as const).filter((slot) => !s.slots[slot] && !s.repairs.some((r) => r.slot === slot));
  if (s.active && !s.slots[s.active]) s.active = null;
  if (s.previous && !s.slots[s.previous]) s.previous = null;
  if (s.probation?.previous && !s.slots[s.probation.previous]) s.probation = { ...s.probation, previous: null };
  return { state: s, reports, clearSlots };
}

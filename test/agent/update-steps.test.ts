// The update's changes to the state record, pure and table-tested (device-agent/update-steps.ts).
import { describe, expect, it } from 'vitest';
import type { AgentState, ProbationRecord, RepairRecord, SlotRecord } from '../../device-agent/state-store.ts';
import { abandonUpdate, claimSlot, failProbation, finishRepair, switchTo } from '../../device-agent/update-steps.ts';

const rec = (version: number): SlotRecord => ({ manifestSha256: String(version).padStart(64, '0'), modelId: 'm', version, artifactSha256: 'b'.repeat(64), length: 10 });
const base = (over: Partial<AgentState> = {}): AgentState => ({
  format: 1, trust: { rootPublicKey: 'x', keysetVersion: 1, lastSeq: 3, lastDirectorSig: null, versionFloors: { m: 2 }, timeFloor: 0 },
  slots: { a: rec(1), b: rec(2) }, active: 'b', previous: 'a', telemetrySeq: 0, update: null, probation: null, statusSeq: 0, outbox: [], repairs: [], shadow: null, ...over,
});
const onProbation = (previous: 'a' | 'b' | null): ProbationRecord => ({ slot: 'b', previous, manifestSha256: rec(2).manifestSha256, modelId: 'm', version: 2, directorSeq: 3, startedAt: 1, cleanStop: false });
const update = { slot: null, manifestSha256: rec(3).manifestSha256, modelId: 'm', version: 3, artifactSha256: 'c'.repeat(64), directorSeq: 4 };

describe('claimSlot', () => {
  it.each([
    ['the revert target: no longer named, nor offered to the model on probation', base({ probation: onProbation('a'), update }), { a: null, previous: null, probationPrevious: null, updateSlot: 'a' }],
    ['an empty slot: nothing else changes', base({ slots: { a: null, b: rec(2) }, previous: null, update }), { a: null, previous: null, probationPrevious: undefined, updateSlot: 'a' }],
  ] as const)('%s', (_n, s, want) => {
    const next = claimSlot(s, 'a');
    expect({ a: next.slots.a, previous: next.previous, probationPrevious: next.probation?.previous, updateSlot: next.update?.slot }).toEqual(want);
    expect(next.slots.b).toEqual(rec(2));
    expect(next.active).toBe('b');
  });
});

describe('switchTo', () => {
  it('makes the slot active, keeps the one before as previous, raises the floor, ends the update, opens probation', () => {
    const p = { ...onProbation('b'), slot: 'a' as const, version: 5 };
    const next = switchTo(base({ slots: { a: null, b: rec(2) }, update: { ...update, slot: 'a' } }), 'a', rec(5), 'b', p);
    expect([next.active, next.previous, next.slots.a, next.update, next.probation, next.trust.versionFloors.m]).toEqual(['a', 'b', rec(5), null, p, 5]);
  });
  it('never lowers a floor', () => {
    expect(switchTo(base({ trust: { ...base().trust, versionFloors: { m: 9 } } }), 'a', rec(5), 'b', null).trust.versionFloors.m).toBe(9);
  });
});

describe('abandonUpdate', () => {
  it.each([
    ['still in staging: no slot to clear', null, null],
    ['after the slot was claimed: that slot', 'a', 'a'],
  ] as const)('%s', (_n, slot, clear) => {
    const r = abandonUpdate(base({ update: { ...update, slot } }));
    expect([r.state.update, r.clear]).toEqual([null, clear]);
  });
});

describe('failProbation', () => {
  it.each([
    ['previous loaded: back to it, the failed slot cleared', 'a', true, { outcome: 'reverted', active: 'a', kept: ['a'], clear: 'b' }],
    ['previous did not load: the model on probation stays, the target is dropped', 'a', false, { outcome: 'kept', active: 'b', kept: ['b'], clear: 'a' }],
    ['no previous: the model on probation stays', null, false, { outcome: 'kept', active: 'b', kept: ['a', 'b'], clear: null }],
  ] as const)('%s', (_n, previous, loaded, want) => {
    const s = base({ probation: onProbation(previous), previous });
    const r = failProbation(s, onProbation(previous), loaded);
    expect({ outcome: r.outcome, active: r.state.active, kept: (['a', 'b'] as const).filter((x) => r.state.slots[x]), clear: r.clear }).toEqual(want);
    expect(r.state.probation).toBeNull();
    expect(r.state.previous === null || r.state.slots[r.state.previous] !== null).toBe(true);
  });
  it('does not change its input', () => {
    const s = base({ probation: onProbation('a') });
    const copy = structuredClone(s);
    failProbation(s, onProbation('a'), true);
    claimSlot(s, 'a');
    expect(s).toEqual(copy);
  });
});

describe('finishRepair', () => {
  const job = (slot: 'a' | 'b', role: RepairRecord['role'], version: number): RepairRecord => ({ slot, record: rec(version), role, why: 'truncated' });
  it.each([
    // was active (b), a served meanwhile: b active again, a the previous one
    ['active, fetched: active again over the fallback', base({ slots: { a: rec(1), b: null }, active: 'a', previous: null }), job('b', 'active', 2), true,
      { outcome: 'activated', active: 'b', previous: 'a', b: 2, probation: null, clear: [] }],
    ['active, nothing served meanwhile: active again', base({ slots: { a: null, b: null }, active: null, previous: null }), job('b', 'active', 2), true,
      { outcome: 'activated', active: 'b', previous: null, b: 2, probation: null, clear: [] }],
    ['previous, fetched: a revert target again', base({ slots: { a: null, b: rec(2) }, previous: null }), job('a', 'previous', 1), true,
      { outcome: 'previous', active: 'b', previous: 'a', b: 2, probation: null, clear: [] }],
    ['revert target of a crashed probation still under way: reverted to, the model on probation cleared',
      base({ slots: { a: null, b: rec(2) }, previous: null, probation: onProbation(null) }), job('a', 'revert', 1), true,
      { outcome: 'reverted', active: 'a', previous: null, b: null, probation: null, clear: ['b'] }],
    ['revert target, probation passed meanwhile: kept as the previous model only',
      base({ slots: { a: null, b: rec(2) }, previous: null }), job('a', 'revert', 1), true,
      { outcome: 'previous', active: 'b', previous: 'a', b: 2, probation: null, clear: [] }],
    ['not fetched: the job goes, its files are cleared, nothing else changes', base({ slots: { a: rec(1), b: null }, active: 'a', previous: null }), job('b', 'active', 2), false,
      { outcome: 'failed', active: 'a', previous: null, b: null, probation: null, clear: ['b'] }],
  ] as const)('%s', (_n, s0, j, repaired, want) => {
    const s = { ...s0, repairs: [j] };
    const r = finishRepair(s, j, repaired);
    expect({ outcome: r.outcome, active: r.state.active, previous: r.state.previous, b: r.state.slots.b?.version ?? null, probation: r.state.probation, clear: r.clear }).toEqual(want);
    expect(r.state.repairs).toEqual([]);
    expect(s.repairs).toEqual([j]); // pure
  });
});

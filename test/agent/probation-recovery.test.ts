// The probation tracker and the start-up recovery plan: pure decisions, table-tested.
import { describe, expect, it } from 'vitest';
import { Probation } from '../../device-agent/probation.ts';
import { planRecovery } from '../../device-agent/recovery.ts';
import type { AgentState } from '../../device-agent/state-store.ts';

const limits = { inferences: 20, seconds: 10, maxErrorRate: 0.1, maxLatencyMs: 50 };

describe('Probation', () => {
  it('passes after N good inferences', () => {
    const p = new Probation(limits, 0);
    for (let i = 0; i < 19; i++) p.record(5, true);
    expect(p.verdict(1000).kind).toBe('continue');
    p.record(5, true);
    expect(p.verdict(1000)).toMatchObject({ kind: 'pass' });
  });

  it('passes when the time is up, whichever comes first', () => {
    const p = new Probation(limits, 0);
    p.record(5, true);
    expect(p.verdict(9_999).kind).toBe('continue');
    expect(p.verdict(10_000).kind).toBe('pass');
  });

  it('fails early once errors exceed the budget of the whole window', () => {
    const p = new Probation(limits, 0);
    p.record(5, false);
    p.record(5, false);
    expect(p.verdict(0).kind).toBe('continue'); // 2 of a 20-call window at 10% is still allowed
    p.record(5, false);
    expect(p.verdict(0)).toMatchObject({ kind: 'fail', detail: expect.stringMatching(/errors/) });
  });

  it('fails on p95 latency over the limit at the end of the window', () => {
    const p = new Probation(limits, 0);
    for (let i = 0; i < 20; i++) p.record(i < 17 ? 5 : 80, true);
    expect(p.verdict(0)).toMatchObject({ kind: 'fail', detail: expect.stringMatching(/latency/) });
  });

  it('with only a time limit, an error rate over the limit fails at the end', () => {
    const p = new Probation({ ...limits, inferences: 0 }, 0);
    p.record(5, true);
    p.record(5, false);
    expect(p.verdict(5_000).kind).toBe('continue');
    expect(p.verdict(10_000).kind).toBe('fail');
  });

  it('is off when both limits are 0', () => {
    expect(Probation.enabled({ ...limits, inferences: 0, seconds: 0 })).toBe(false);
  });
});

const rec = (version: number) => ({ manifestSha256: String(version).repeat(64).slice(0, 64).replace(/[^0-9a-f]/g, 'a'), modelId: 'm', version, artifactSha256: 'b'.repeat(64), length: 10 });
function state(over: Partial<AgentState>): AgentState {
  return {
    format: 1, trust: { rootPublicKey: 'x', keysetVersion: 1, lastSeq: 3, lastDirectorSig: null, versionFloors: { m: 2 }, timeFloor: 0 },
    slots: { a: rec(1), b: null }, active: 'a', previous: null, telemetrySeq: 0, update: null, probation: null, statusSeq: 0, outbox: [], repairs: [], shadow: null, ...over,
  };
}

describe('planRecovery', () => {
  it('a clean state needs nothing', () => {
    const r = planRecovery(state({}), 5);
    expect(r.reports).toEqual([]);
    expect(r.state.active).toBe('a');
    expect(r.clearSlots).toEqual(['b']);
  });

  it('an update cut short is abandoned and reported as CRASH_RECOVERY; the active slot is untouched', () => {
    const r = planRecovery(state({ update: { slot: 'b', manifestSha256: rec(2).manifestSha256, modelId: 'm', version: 2, artifactSha256: 'c'.repeat(64), directorSeq: 3 } }), 5);
    expect(r.state.update).toBeNull();
    expect(r.state.active).toBe('a');
    expect(r.reports).toMatchObject([{ state: 'failed', extra: { reason: 'CRASH_RECOVERY', version: 2 } }]);
    expect(r.clearSlots).toEqual(['b']);
  });

  const onProbation = (cleanStop: boolean, previous: 'a' | null) => state({
    slots: { a: rec(1), b: rec(2) }, active: 'b', previous,
    probation: { slot: 'b', previous, manifestSha256: rec(2).manifestSha256, modelId: 'm', version: 2, directorSeq: 3, startedAt: 1, cleanStop },
  });

  it('a crash while on probation reverts to the previous slot and clears the failed one', () => {
    const r = planRecovery(onProbation(false, 'a'), 5);
    expect(r.state.active).toBe('a');
    expect(r.state.slots.b).toBeNull();
    expect(r.state.probation).toBeNull();
    expect(r.reports).toMatchObject([{ state: 'reverted', extra: { reason: 'CRASH_RECOVERY', version: 2 } }]);
    expect(r.clearSlots).toEqual(['b']);
  });

  it('a clean stop while on probation restarts the window instead', () => {
    const r = planRecovery(onProbation(true, 'a'), 5);
    expect(r.state.active).toBe('b');
    expect(r.state.probation).toMatchObject({ startedAt: 5, cleanStop: false });
    expect(r.reports).toEqual([]);
  });

  it('with nothing to go back to, the model stays and is watched again', () => {
    const r = planRecovery(onProbation(false, null), 5);
    expect(r.state.active).toBe('b');
    expect(r.state.probation).toMatchObject({ startedAt: 5 });
  });

  it('does not change its input', () => {
    const s = onProbation(false, 'a');
    const copy = structuredClone(s);
    planRecovery(s, 5);
    expect(s).toEqual(copy);
  });
});

describe('planRecovery checks before it deletes', () => {
  type Checks = Partial<Record<'a' | 'b', 'ok' | 'damaged'>>;
  const probation = (previous: 'a' | null, cleanStop = false) => ({
    slot: 'b' as const, previous, manifestSha256: rec(2).manifestSha256, modelId: 'm', version: 2, directorSeq: 3, startedAt: 1, cleanStop,
  });
  const two = (over: Partial<AgentState> = {}) => state({ slots: { a: rec(1), b: rec(2) }, active: 'b', previous: 'a', ...over });
  const update = { slot: null, manifestSha256: rec(3).manifestSha256, modelId: 'm', version: 3, artifactSha256: 'c'.repeat(64), directorSeq: 4 };
  // what is found on disk -> which slot runs, which records are kept, what is reported (in order)
  const table: { name: string; s: AgentState; checks: Checks; active: 'a' | 'b' | null; kept: ('a' | 'b')[]; reports: [string, string][]; watched?: boolean }[] = [
    { name: 'probation crash, previous verifies: revert to it', s: two({ probation: probation('a') }), checks: { a: 'ok', b: 'ok' }, active: 'a', kept: ['a'], reports: [['reverted', 'CRASH_RECOVERY']] },
    { name: 'probation crash, previous damaged: keep the model that passed its health check', s: two({ probation: probation('a') }), checks: { a: 'damaged', b: 'ok' }, active: 'b', kept: ['b'], reports: [['active', 'REVERT_TARGET_DAMAGED']], watched: true },
    { name: 'probation crash, both damaged: nothing left, said so', s: two({ probation: probation('a') }), checks: { a: 'damaged', b: 'damaged' }, active: null, kept: [], reports: [['failed', 'SLOT_DAMAGED']] },
    { name: 'probation crash, the model on probation damaged: revert', s: two({ probation: probation('a') }), checks: { a: 'ok', b: 'damaged' }, active: 'a', kept: ['a'], reports: [['reverted', 'CRASH_RECOVERY']] },
    { name: 'clean stop on probation, previous damaged: watched again, target dropped', s: two({ probation: probation('a', true) }), checks: { a: 'damaged', b: 'ok' }, active: 'b', kept: ['b'], reports: [['active', 'SLOT_DAMAGED']], watched: true },
    { name: 'active damaged, previous verifies: fall back', s: two(), checks: { a: 'ok', b: 'damaged' }, active: 'a', kept: ['a'], reports: [['reverted', 'SLOT_DAMAGED']] },
    { name: 'active damaged, no previous: no model', s: two({ previous: null, slots: { a: null, b: rec(2) } }), checks: { b: 'damaged' }, active: null, kept: [], reports: [['failed', 'SLOT_DAMAGED']] },
    { name: 'previous damaged: dropped, active kept', s: two(), checks: { a: 'damaged', b: 'ok' }, active: 'b', kept: ['b'], reports: [['active', 'SLOT_DAMAGED']] },
    { name: 'update cut short and active damaged: both reported', s: two({ update }), checks: { a: 'ok', b: 'damaged' }, active: 'a', kept: ['a'], reports: [['failed', 'CRASH_RECOVERY'], ['reverted', 'SLOT_DAMAGED']] },
    { name: 'all verifies: nothing to say', s: two(), checks: { a: 'ok', b: 'ok' }, active: 'b', kept: ['a', 'b'], reports: [] },
  ];

  it.each(table)('$name', ({ s, checks, active, kept, reports, watched }) => {
    const r = planRecovery(s, 5, checks);
    expect(r.state.active).toBe(active);
    expect((['a', 'b'] as const).filter((x) => r.state.slots[x])).toEqual(kept);
    expect(r.reports.map((x) => [x.state, x.extra.reason])).toEqual(reports);
    expect(r.state.probation !== null).toBe(watched ?? false);
    // the record never names a slot that does not verify
    for (const name of [r.state.active, r.state.previous, r.state.probation?.slot, r.state.probation?.previous]) {
      if (name) expect(checks[name]).toBe('ok');
    }
    expect(r.clearSlots).toEqual((['a', 'b'] as const).filter((x) => !kept.includes(x)));
  });
});

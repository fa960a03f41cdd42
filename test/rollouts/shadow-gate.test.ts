// The shadow gate's decision (server/rollouts/shadow-gate.ts judgeShadow), table-tested: holds until the
// soak, devices and samples are there; then each hardware group is judged on its own, and every failure
// names the group, the output, the figure and the limit. Plus the figures themselves (shared/shadow-figures.ts).
import { describe, expect, it } from 'vitest';
import type { ShadowOutputSums } from '../../shared/messages.ts';
import { addSample, addWindow, emptySums, emptyTotals, outputFigures, shadowFigures, type ShadowTotals } from '../../shared/shadow-figures.ts';
import { ShadowGate, ShadowWave } from '../../server/rollouts/campaign-config.ts';
import { judgeShadow, type ShadowGateFigures } from '../../server/rollouts/shadow-gate.ts';

const gate = ShadowGate.parse({});
const wave = ShadowWave.parse({ minSamples: 100, minDevices: 2, soakSeconds: 10 });

function cls(positions: number, agree: number): ShadowOutputSums {
  return { kind: 'classifier', positions, agree, signal: 10, noise: 0, dot: 10, candidateSq: 10, maxAbsError: 0 };
}
function totals(o: Partial<ShadowTotals> & { outputs?: Record<string, ShadowOutputSums> }): ShadowTotals {
  return { samples: 100, errors: 0, dropped: 0, activeMs: 100, candidateMs: 100, outputs: { probs: cls(100, 100) }, ...o };
}
function figures(groups: { hardware: string; devices: number; t: ShadowTotals }[]): ShadowGateFigures {
  const total = emptyTotals();
  for (const g of groups) addWindow(total, g.t);
  return { devices: groups.reduce((a, g) => a + g.devices, 0), total, groups: groups.map((g) => ({ hardware: g.hardware, devices: g.devices, totals: g.t })) };
}

describe('judgeShadow', () => {
  const T0 = 1_000_000;
  const cases: { name: string; f: ShadowGateFigures; now?: number; kind: 'hold' | 'pass' | 'halt'; lines?: string[]; why?: RegExp }[] = [
    { name: 'soaking', f: figures([{ hardware: 'a', devices: 2, t: totals({}) }]), now: T0 + 4000, kind: 'hold', why: /soaking in shadow, 6 s left/ },
    { name: 'too few devices', f: figures([{ hardware: 'a', devices: 1, t: totals({}) }]), kind: 'hold', why: /1\/2 devices reporting, 100\/100 inputs compared/ },
    { name: 'too few samples', f: figures([{ hardware: 'a', devices: 2, t: totals({ samples: 99 }) }]), kind: 'hold', why: /99\/100 inputs compared/ },
    { name: 'identical candidate', f: figures([{ hardware: 'a', devices: 1, t: totals({}) }, { hardware: 'b', devices: 1, t: totals({}) }]), kind: 'pass', lines: [] },
    {
      name: 'one group disagrees on 10%: only that group is named, the others average it out to 0.95',
      f: figures([{ hardware: 'cam-a', devices: 1, t: totals({}) }, { hardware: 'cam-b', devices: 1, t: totals({ outputs: { probs: cls(100, 90) } }) }]),
      kind: 'halt', lines: ['hardware cam-b: probs: top-1 agreement 0.9000 is below the minimum 0.99 (100 positions)'],
    },
    {
      name: 'fidelity output: SQNR and cosine (the push gate\'s fidelity measures)',
      f: figures([{ hardware: 'a', devices: 2, t: totals({ outputs: { emb: { kind: 'fidelity', positions: 0, agree: 0, signal: 100, noise: 10, dot: 10, candidateSq: 100, maxAbsError: 1 } } }) }]),
      kind: 'halt', lines: ['hardware a: emb: SQNR 10.00 dB is below the minimum 20 dB', 'hardware a: emb: cosine 0.10000 is below the minimum 0.99'],
    },
    {
      name: 'slower by 3 ms a sample: over the latency ratio',
      f: figures([{ hardware: 'a', devices: 2, t: totals({ activeMs: 100, candidateMs: 400 }) }]),
      kind: 'halt', lines: ['hardware a: latency ratio 4.00 (candidate / active on the same inputs) is over the maximum 1.5'],
    },
    { name: 'ratio 4 but under 1 ms a sample: timer noise, passes', f: figures([{ hardware: 'a', devices: 2, t: totals({ activeMs: 10, candidateMs: 40 }) }]), kind: 'pass', lines: [] },
    {
      name: 'errors over the limit',
      f: figures([{ hardware: '', devices: 2, t: totals({ errors: 5 }) }]),
      kind: 'halt', lines: ['hardware (unknown): candidate error rate 4.76% is over the maximum 1.00%'],
    },
  ];
  it('shadow.maxSeconds: after the deadline, too few devices or samples time out with what was reached; enough figures are judged as usual', () => {
    const w = ShadowWave.parse({ minSamples: 100, minDevices: 2, soakSeconds: 10, maxSeconds: 60 });
    const few = figures([{ hardware: 'a', devices: 1, t: totals({ samples: 40 }) }]);
    expect(judgeShadow(w, gate, 1, few, T0, T0 + 59_999).kind).toBe('hold');
    expect(judgeShadow(w, gate, 1, few, T0, T0 + 60_000)).toEqual({ kind: 'timeout', timeout: {
      reason: 'SHADOW_TIMEOUT', why: 'the shadow phase ran out of time (maxSeconds 60) with 1/2 devices reporting, 40/100 inputs compared',
      devices: 1, minDevices: 2, samples: 40, minSamples: 100, maxSeconds: 60,
    } });
    const none = figures([]);
    expect(judgeShadow(w, gate, 1, none, T0, T0 + 3_600_000)).toMatchObject({ kind: 'timeout', timeout: { devices: 0, samples: 0 } });
    // enough figures after the deadline: judged, not timed out
    expect(judgeShadow(w, gate, 1, figures([{ hardware: 'a', devices: 2, t: totals({}) }]), T0, T0 + 120_000).kind).toBe('pass');
    expect(ShadowWave.parse({}).maxSeconds).toBe(3600);
    expect(() => ShadowWave.parse({ soakSeconds: 120, maxSeconds: 60 })).toThrow(/shadow.maxSeconds must be at least shadow.soakSeconds/);
  });
  for (const c of cases) {
    it(c.name, () => {
      const step = judgeShadow(wave, gate, 1, c.f, T0, c.now ?? T0 + 10_000);
      expect(step.kind).toBe(c.kind);
      if (step.kind === 'hold') expect(step.why).toMatch(c.why!);
      else expect((step as { verdict: { failures: string[] } }).verdict.failures).toEqual(c.lines);
    });
  }
});

describe('shadow figures', () => {
  it('adds samples into sums that give top-1 agreement, SQNR and cosine as the push gate computes them', () => {
    const s = emptySums('classifier');
    expect(addSample(s, { data: [0.1, 0.9], dims: [1, 2] }, { data: [0.1, 0.9], dims: [1, 2] })).toBe(true);
    expect(addSample(s, { data: [0.8, 0.2], dims: [1, 2] }, { data: [0.4, 0.6], dims: [1, 2] })).toBe(true);
    expect(addSample(s, { data: [0.8, 0.2], dims: [1, 2] }, { data: [0.4], dims: [1] })).toBe(false); // not comparable
    expect(addSample(s, { data: [0.8, 0.2], dims: [1, 2] }, { data: [NaN, 1], dims: [1, 2] })).toBe(false);
    expect(s.positions).toBe(2);
    expect(s.agree).toBe(1);
    const f = outputFigures(s);
    const signal = 0.01 + 0.81 + 0.64 + 0.04, noise = 0.16 + 0.16;
    expect(f.agreement).toBe(0.5);
    expect(f.sqnrDb).toBeCloseTo(10 * Math.log10(signal / noise), 10);
    expect(f.maxAbsError).toBeCloseTo(0.4, 12);
    const t = emptyTotals();
    addWindow(t, { samples: 2, errors: 2, dropped: 1, activeMs: 1, candidateMs: 3, outputs: { probs: s } });
    const all = shadowFigures(t);
    expect(all.errorRate).toBe(0.5);
    expect(all.latencyRatio).toBe(3);
    expect(all.agreement).toBe(0.5);
  });
});

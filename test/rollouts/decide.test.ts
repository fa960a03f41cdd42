// The rollout decision, table-tested without a server.
import { describe, expect, it } from 'vitest';
import { GateConfig, WaveSpec } from '../../server/rollouts/campaign-config.ts';
import { decideWithFigures, judgeGate, nextStep, waveBoundaries, type GateFigures, type WaveProgress } from '../../server/rollouts/decide.ts';
import { psi, driftLevel } from '../../server/rollouts/psi.ts';
import { spreadByHardware } from '../../server/rollouts/engine.ts';

const gates = GateConfig.parse({});
const waves = [1, 10, 50, 100].map((percent, i) => WaveSpec.parse({ percent, minDevices: i === 0 ? 5 : 1, soakSeconds: 10, minReporting: 2, minInferences: 100 }));
const progress = (p: Partial<WaveProgress>): WaveProgress => ({ inWaves: 5, pending: 0, inFlight: 0, updated: 5, failed: 0, reverted: 0, settledAt: 0, ...p });
const figures = (f: Partial<GateFigures>): GateFigures => ({ reporting: 5, inferences: 1000, errors: 0, latency: null, drift: [], ...f });
const input = (p: Partial<WaveProgress>, extra: Partial<{ wave: number; now: number; status: 'running' | 'paused' }> = {}) =>
  ({ status: 'running' as const, wave: 0, waves, gates, progress: progress(p), now: 20_000, ...extra });

describe('nextStep', () => {
  it.each([
    ['paused campaigns hold', input({}, { status: 'paused' }), 'hold'],
    ['devices still to assign', input({ pending: 2, updated: 3 }), 'hold'],
    ['devices in flight', input({ inFlight: 1, updated: 4 }), 'hold'],
    ['soak not over', input({ settledAt: 15_000 }), 'hold'],
    ['soak over: judge', input({ settledAt: 5_000 }), 'judge'],
    ['one failure of five halts at once, even mid-wave', input({ updated: 3, failed: 1, inFlight: 1 }), 'halt'],
    ['a probation revert counts as a failure', input({ updated: 4, reverted: 1 }), 'halt'],
  ])('%s', (_name, c, kind) => {
    expect(nextStep(c).kind).toBe(kind);
  });

  it('needs both the rate and the count to fail (>= 5% and >= 10 devices)', () => {
    const g = GateConfig.parse({ failureRate: 0.05, failureCount: 10 });
    expect(nextStep({ ...input({ inWaves: 100, updated: 91, failed: 9 }), gates: g }).kind).not.toBe('halt');
    expect(nextStep({ ...input({ inWaves: 100, updated: 90, failed: 10 }), gates: g }).kind).toBe('halt');
    expect(nextStep({ ...input({ inWaves: 1000, updated: 989, failed: 11 }), gates: g }).kind).not.toBe('halt'); // 1.1%
  });
});

describe('decideWithFigures', () => {
  const soaked = input({ settledAt: 0 });
  it.each([
    ['waits for reporting devices', figures({ reporting: 1 }), 'hold'],
    ['waits for inferences', figures({ inferences: 50 }), 'hold'],
    ['advances a healthy wave', figures({}), 'advance'],
    ['halts on inference errors over 2%', figures({ errors: 30 }), 'halt'],
    ['halts on 2x p95 latency', figures({ latency: { newP95: 40, oldP95: 20, newP99: 44, oldP99: 30 } }), 'halt'],
    ['ignores a 2x ratio on a sub-millisecond model', figures({ latency: { newP95: 0.06, oldP95: 0.03, newP99: 0.09, oldP99: 0.04 } }), 'advance'],
    ['passes 5% slower', figures({ latency: { newP95: 21, oldP95: 20, newP99: 31.5, oldP99: 30 } }), 'advance'],
    ['halts on PSI alert (0.2)', figures({ drift: [{ name: 'input:x', psi: 0.25 }] }), 'halt'],
    ['only warns on PSI 0.15', figures({ drift: [{ name: 'input:x', psi: 0.15 }] }), 'advance'],
  ])('%s', (_name, f, kind) => {
    expect(decideWithFigures(soaked, f).kind).toBe(kind);
  });

  it('completes after the last wave', () => {
    expect(decideWithFigures({ ...soaked, wave: 3 }, figures({})).kind).toBe('done');
  });

  it('names the failing figure with its value and limit', () => {
    const v = judgeGate(progress({}), figures({ latency: { newP95: 40, oldP95: 20, newP99: 44, oldP99: 30 }, drift: [{ name: 'output:y', psi: 0.31 }] }), gates);
    expect(v.passed).toBe(false);
    expect(v.failures.join('\n')).toMatch(/p95 latency 40.00 ms is 2.00x the previous model's 20.00 ms \(limit 1.5x\)/);
    expect(v.failures.join('\n')).toMatch(/drift on output:y: PSI 0.310 \(critical/);
    expect(v.figures.p95Ratio).toBe(2);
  });

  it('[#19] judges every model of a release by its own figures and names the models that fail', () => {
    const models = [
      { modelId: 'mel', inferences: 1000, errors: 0, latency: { newP95: 1, oldP95: 1, newP99: 1, oldP99: 1 } },
      { modelId: 'emb', inferences: 50, errors: 5, latency: { newP95: 5, oldP95: 1, newP99: 5, oldP99: 1 } },
      { modelId: 'kws', inferences: 1000, errors: 0, latency: null },
    ];
    // the device-wide figures pass: emb's errors and latency are too few to move them
    const v = judgeGate(progress({}), figures({ inferences: 2050, errors: 5, latency: { newP95: 1, oldP95: 1, newP99: 1, oldP99: 1 }, models }), gates);
    expect(v.passed).toBe(false);
    expect(v.failedModels).toEqual(['emb']);
    expect(v.failures).toEqual([
      'model emb: inference error rate 10.00% over the 2.00% limit',
      "model emb: p95 latency 5.00 ms is 5.00x the previous model's 1.00 ms (limit 1.5x)",
      "model emb: p99 latency 5.00 ms is 5.00x the previous model's 1.00 ms (limit 2x)",
    ]);
    expect(v.figures).toMatchObject({ 'mel:errorRate': 0, 'mel:p95Ratio': 1, 'emb:errors': 5, 'emb:p95Ratio': 5, 'kws:p95Ratio': null, p95Ratio: 1 });
    // without per-model figures (a campaign of one bundle) the verdict has no failedModels
    expect(judgeGate(progress({}), figures({}), gates)).not.toHaveProperty('failedModels');
  });

  it('[#19] judges the drift of every model of a release on its own histograms, naming the model', () => {
    const models = [
      { modelId: 'mel', inferences: 1000, errors: 0, latency: null, drift: [{ name: 'input:x', psi: 0.15 }, { name: 'output:probs', psi: 0.02 }] },
      { modelId: 'emb', inferences: 50, errors: 0, latency: null, drift: [{ name: 'input:x', psi: 0.5 }, { name: 'output:probs', psi: 0.25 }] },
      { modelId: 'kws', inferences: 1000, errors: 0, latency: null }, // no baseline: no drift figures
    ];
    const v = judgeGate(progress({}), figures({ drift: [{ name: 'input:x', psi: 0.01 }], models }), gates);
    expect(v.failedModels).toEqual(['emb']);
    expect(v.failures).toEqual(['model emb: drift on input:x: PSI 0.500 (critical; warn 0.1, alert 0.2, critical 0.3)']);
    expect(v.warnings).toEqual(['model mel: drift on input:x: PSI 0.150 (warn; warn 0.1, alert 0.2, critical 0.3)']);
    expect(v.figures).toMatchObject({ 'psi:input:x': 0.01, 'mel:psi:input:x': 0.15, 'emb:psi:input:x': 0.5, 'emb:psi:output:probs': 0.25 });
    // haltOnDrift 'never': every model's drift is a warning
    const never = judgeGate(progress({}), figures({ models }), GateConfig.parse({ haltOnDrift: 'never' }));
    expect([never.passed, never.failedModels, never.warnings.length]).toEqual([true, undefined, 2]);
  });

  it("haltOnDrift 'critical' lets an alert pass with a warning", () => {
    const v = judgeGate(progress({}), figures({ drift: [{ name: 'input:x', psi: 0.25 }] }), GateConfig.parse({ haltOnDrift: 'critical' }));
    expect(v.passed).toBe(true);
    expect(v.warnings[0]).toMatch(/alert/);
  });
});

describe('waves and ordering', () => {
  it('gives the default 1% (at least 5) -> 10% -> 50% -> 100% boundaries', () => {
    expect(waveBoundaries(waves, 200)).toEqual([5, 20, 100, 200]);
    expect(waveBoundaries(waves, 10_000)).toEqual([100, 1000, 5000, 10_000]);
    expect(waveBoundaries(waves, 3)).toEqual([3, 3, 3, 3]);
  });

  it('spreads every prefix over hardware classes', () => {
    const devices = Array.from({ length: 40 }, (_, i) => ({ device_id: `d${i}`, hardware: ['a', 'b', 'c', 'd'][i % 4] }));
    const first5 = spreadByHardware(devices, 'salt').slice(0, 5).map((d) => d.hardware);
    expect(new Set(first5)).toEqual(new Set(['a', 'b', 'c', 'd']));
    expect(spreadByHardware(devices, 'salt')).toHaveLength(40);
    expect(new Set(spreadByHardware(devices, 'salt').map((d) => d.device_id)).size).toBe(40);
  });
});

describe('PSI', () => {
  it('is zero for the same distribution and grows with the shift', () => {
    expect(psi([10, 20, 30, 40], [10, 20, 30, 40])).toBe(0);
    expect(psi([100, 200, 300, 400], [10, 20, 30, 40])).toBeLessThan(0.01);
    const small = psi([25, 25, 25, 25], [22, 26, 26, 26]);
    const big = psi([25, 25, 25, 25], [5, 5, 20, 70]);
    expect(small).toBeLessThan(0.1);
    expect(big).toBeGreaterThan(0.3);
    expect(driftLevel(big, { warn: 0.1, alert: 0.2, critical: 0.3 })).toBe('critical');
  });

  it('does not call a bin the baseline left empty critical on a few stray samples', () => {
    // 200-sample baseline with an empty class, 100 observations with 2 in it
    expect(psi([183, 7, 10, 0], [90, 4, 4, 2])).toBeLessThan(0.1);
  });
});

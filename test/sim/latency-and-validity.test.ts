// The pure parts of a simulator that knows its limits: device time per hardware class (latency-model.ts),
// when a run is invalid (validity.ts), and a scenario's expect against an outcome (expect.ts).
import { describe, expect, it } from 'vitest';
import type { CapacityReport } from '../../firmware-sim/capacity.ts';
import { checkExpect, type Observed } from '../../firmware-sim/expect.ts';
import type { ProcessReport } from '../../firmware-sim/fleet-processes.ts';
import { latencySampler } from '../../firmware-sim/latency-model.ts';
import { Expect, Limits } from '../../firmware-sim/scenario.ts';
import { judgeValidity } from '../../firmware-sim/validity.ts';

const quantile = (xs: number[], q: number) => [...xs].sort((a, b) => a - b)[Math.floor(q * (xs.length - 1))];

describe('latency model', () => {
  it('seeded: the same device gives the same figures; another device other ones', () => {
    const m = { baseMs: 20 };
    const a = latencySampler(m, 7), b = latencySampler(m, 7), c = latencySampler(m, 8);
    const xa = Array.from({ length: 5 }, () => a(1)), xb = Array.from({ length: 5 }, () => b(1)), xc = Array.from({ length: 5 }, () => c(1));
    expect(xa).toEqual(xb);
    expect(xa).not.toEqual(xc);
  });

  it('mean baseMs, relative sd `jitter`, a tail of tailProbability x tailFactor; cost ratio scales every figure', () => {
    const n = 100_000;
    const s = latencySampler({ baseMs: 20, jitter: 0.1, tailProbability: 0, tailFactor: 3 }, 1);
    const xs = Array.from({ length: n }, () => s(1));
    const mean = xs.reduce((x, y) => x + y, 0) / n;
    const sd = Math.sqrt(xs.reduce((x, y) => x + (y - mean) ** 2, 0) / n);
    expect(mean).toBeCloseTo(20, 0);
    expect(sd / mean).toBeCloseTo(0.1, 2);
    // with the default tail: ~1% of calls are ~3x
    const t = latencySampler({ baseMs: 20 }, 2);
    const slow = Array.from({ length: n }, () => t(1)).filter((x) => x > 45).length;
    expect(slow / n).toBeGreaterThan(0.008);
    expect(slow / n).toBeLessThan(0.012);
    // a 2x costlier artifact: every quantile 2x (same seed, same draws)
    const u = latencySampler({ baseMs: 20 }, 3), v = latencySampler({ baseMs: 20 }, 3);
    const one = Array.from({ length: 10_000 }, () => u(1)), two = Array.from({ length: 10_000 }, () => v(2));
    expect(quantile(two, 0.95) / quantile(one, 0.95)).toBeCloseTo(2, 10);
  });
});

const cap = (c: Partial<CapacityReport> = {}): CapacityReport => ({
  role: 'fleet', samples: 60, lagP99MaxMs: 20, lagP99MeanMs: 10, lagMaxMs: 30, samplesOverLag: 0, backlogMax: 0, cpuMean: 0.5, cpuMax: 0.7, runtimeCalls: 1000, runtimeCallsPerSecond: 16, ...c,
});
const proc = (p: { capacity?: Partial<CapacityReport>; workload?: Partial<ProcessReport['workload']>; infra?: number } = {}): ProcessReport => ({
  capacity: cap(p.capacity),
  workload: { calls: 1000, answered: 1000, errors: 0, infraFailures: p.infra ?? 0, busy: 0, late: 0, noModel: 0, ...p.workload },
  health: { infraFailures: p.infra ?? 0, firstInfraFailure: p.infra ? 'Aborted()' : null, releasedRuns: 0 },
});

describe('validity', () => {
  const limits = Limits.parse({});
  const server = cap({ role: 'server' });
  it.each([
    ['within capacity', [proc()], []],
    ['lag over the limit in 16 of 60 samples (over 25%)', [proc({ capacity: { samplesOverLag: 16, lagP99MaxMs: 900 } })], [/fleet process 1 over capacity: event-loop lag p99 above 500 ms in 16 of 60/]],
    ['lag over the limit in 15 of 60 samples (at 25%: still valid)', [proc({ capacity: { samplesOverLag: 15 } })], []],
    ['one runtime failure', [proc(), proc({ infra: 1 })], [/1 inference calls failed in the simulator's own runtime \(not reported to the server as model errors; first: Aborted\(\)\)/]],
    ['12% of due calls not made', [proc({ workload: { calls: 880, busy: 20, late: 100 } })], [/120 of 1000 due workload calls \(12\.0%\) were not made \(limit 10\.0%\): 20 found the device still busy, 100 missed by a late event loop/]],
    ['10% of due calls not made (at the limit: valid)', [proc({ workload: { calls: 900, busy: 100 } })], []],
  ] as const)('%s', (_name, fleet, reasons) => {
    const v = judgeValidity(limits, server, [...fleet]);
    expect(v.valid).toBe(reasons.length === 0);
    expect(v.reasons).toHaveLength(reasons.length);
    reasons.forEach((r, i) => expect(v.reasons[i]).toMatch(r));
  });
});

describe('expect', () => {
  const halted: Observed = {
    status: 'reverted', haltWave: 1, failures: ['p95 latency 40.00 ms is 2.00x the previous model\'s 20.00 ms (limit 1.5x)'], byReason: { PROBATION_FAILED: 2 },
    devicesTouched: 10, devicesOnCandidate: 0, outsideTargetChanged: 0, inferenceErrors: 0, valid: true, invalidReasons: [],
  };
  it.each([
    ['all met', { status: 'reverted', haltWave: 1, maxDevicesTouched: 10, reason: 'p95 latency' }, halted, []],
    ['a device reason code matches too', { reason: 'PROBATION_FAILED' }, halted, []],
    ['wrong status and wave', { status: 'completed', haltWave: 2 }, halted, ['status reverted, expected completed', 'halted in wave 1, expected wave 2']],
    ['no halt at all', { haltWave: 1 }, { ...halted, status: 'completed', haltWave: null, failures: [] }, ['no gate failed, expected a halt in wave 1']],
    ['too many touched', { maxDevicesTouched: 5 }, halted, ['10 devices touched, expected at most 5']],
    ['reason missing', { reason: 'drift' }, halted, [expect.stringMatching(/^no gate failure or device reason matches "drift"/)]],
    ['outside the target changed', { nothingOutsideTargetChanged: true }, { ...halted, outsideTargetChanged: 3 }, ['3 devices outside the target changed model']],
    ['inference errors', { maxInferenceErrors: 0 }, { ...halted, inferenceErrors: 7 }, ['7 inference errors reported, expected at most 0']],
    ['an invalid run misses by default', {}, { ...halted, valid: false, invalidReasons: ['lag'] }, ['run invalid: lag']],
    ['unless the scenario expects it', { valid: false }, { ...halted, valid: false, invalidReasons: ['lag'] }, []],
  ] as const)('%s', (_name, e, o, misses) => {
    expect(checkExpect(Expect.parse(e), o as Observed)).toEqual(misses);
  });
});

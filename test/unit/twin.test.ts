// Fleet shape -> twin scenario (firmware-sim/twin.ts), as tables: groups per class, tag set and
// online/offline with their shares, latency models from telemetry, workload rate, scaling, campaign fields.
import { describe, expect, it } from 'vitest';
import type { FleetShape, HardwareClassShape } from '../../shared/api/fleet-shape.ts';
import { parseScenario } from '../../firmware-sim/scenario.ts';
import { failureKinds, scaleCounts, twinScenario } from '../../firmware-sim/twin.ts';

const model = { candidateFile: '/tmp/c.onnx', baselineFile: '/tmp/b.onnx' };
const cls = (hardware: string | null, devices: number, online: number, o: { tagSets?: HardwareClassShape['tagSets']; rate?: number; p50?: number | null; reporting?: number } = {}): HardwareClassShape => ({
  hardware, devices, online,
  tagSets: o.tagSets ?? [{ tags: [], devices, online }],
  currentModels: [{ manifestSha256: 'a'.repeat(64), modelId: 'm', version: 1, devices }],
  telemetry: {
    reportingDevices: o.reporting ?? online, inferences: 0, errors: 0, errorRate: 0, inferencesPerSecond: o.rate ?? 1,
    latencyMs: o.p50 === null ? null : { p50: o.p50 ?? 2, p95: (o.p50 ?? 2) * 2 },
  },
});
const shape = (classes: HardwareClassShape[]): FleetShape => {
  const devices = classes.reduce((a, c) => a + c.devices, 0), online = classes.reduce((a, c) => a + c.online, 0);
  return { target: {}, window: { from: '2026-01-01T00:00:00.000Z', to: '2026-01-01T01:00:00.000Z', seconds: 3600 }, devices, online, onlineShare: devices ? online / devices : 0, classes };
};

describe('scaleCounts', () => {
  it.each([
    [[10, 20, 30], 100, [10, 20, 30]],
    [[1000, 600, 400], 200, [100, 60, 40]],
    [[5, 5, 5], 10, [4, 3, 3]],
    [[999, 1], 10, [10, 0]],
    [[7, 7, 6], 3, [1, 1, 1]],
  ])('%j to at most %i -> %j', (counts, total, want) => {
    expect(scaleCounts(counts, total)).toEqual(want);
    expect(scaleCounts(counts, total).reduce((a, b) => a + b, 0)).toBe(Math.min(total, counts.reduce((a, b) => a + b, 0)));
  });
});

describe('twinScenario', () => {
  it('one group per class, tag set and online/offline; latency model from each class\'s p50; the mean rate', () => {
    const s = shape([
      cls('rpi4', 100, 90, { tagSets: [{ tags: ['eu'], devices: 60, online: 60 }, { tags: ['us'], devices: 40, online: 30 }], rate: 2, p50: 4 }),
      cls('jetson', 50, 50, { rate: 0.5, p50: 1.5 }),
    ]);
    const plan = twinScenario(s, { manifestSha256: 'c'.repeat(64), name: 'x', target: { hardware: ['rpi4', 'jetson'] }, waves: [{ percent: 100 }], onGateFailure: 'pause' }, { model, timeoutMs: 60_000 });
    expect(plan.twinDevices).toBe(150);
    expect(plan.scale).toBe(1);
    expect(plan.scenario.fleet.groups).toEqual([
      { share: 60, hardware: 'rpi4', tags: ['eu'], faults: {}, latencyModel: { baseMs: 4 } },
      { share: 30, hardware: 'rpi4', tags: ['us'], faults: {}, latencyModel: { baseMs: 4 } },
      { share: 10, hardware: 'rpi4', tags: ['us'], faults: { offline: { afterMs: 0, forMs: 60_000 } }, latencyModel: { baseMs: 4 } },
      { share: 50, hardware: 'jetson', tags: [], faults: {}, latencyModel: { baseMs: 1.5 } },
    ]);
    // (2 x 90 + 0.5 x 50) / 140 reporting devices
    expect(plan.inferencesPerSecond).toBe(Number((205 / 140).toFixed(3)));
    expect(plan.notes.some((n) => n.includes('the twin runs the mean'))).toBe(true);
    // the twin is the target: no target, no name, no bundle of the real server
    expect(plan.scenario.campaign).toEqual({ waves: [{ percent: 100 }], onGateFailure: 'pause' });
    expect(plan.scenario.baseline).toBe(true);
    // and it is a valid scenario
    expect(parseScenario(plan.scenario).fleet.devices).toBe(150);
  });

  it('scales down keeping shares, and scales the assignment rate limit with it', () => {
    const plan = twinScenario(shape([cls('a', 10_000, 8_000), cls('b', 6_000, 6_000), cls('c', 4_000, 4_000)]), { rateLimitPerMinute: 1000 }, { model, maxDevices: 2000 });
    expect(plan.twinDevices).toBe(2000);
    expect(plan.scale).toBe(0.1);
    expect(plan.scenario.fleet.groups!.map((g) => [g.hardware, g.share, g.faults?.offline ? 'offline' : 'online'])).toEqual([['a', 800, 'online'], ['a', 200, 'offline'], ['b', 600, 'online'], ['c', 400, 'online']]);
    expect(plan.scenario.campaign).toEqual({ rateLimitPerMinute: 100 });
    expect(plan.scenario.fleet.processes).toBe(4);
    expect(plan.notes[0]).toMatch(/^scaled down: 2000 twin devices for 20000 real ones/);
  });

  it.each([
    { name: 'rate over the cap is capped', classes: [cls('a', 10, 10, { rate: 20 })], opts: { maxInferencesPerSecond: 2 }, rate: 2, note: /capped at 2/ },
    { name: 'no telemetry at all: the assumed rate', classes: [cls('a', 10, 10, { reporting: 0, p50: null })], opts: {}, rate: 1, note: /no telemetry in the window/ },
    { name: 'a slow fleet is raised to the floor', classes: [cls('a', 10, 10, { rate: 0.05 })], opts: { minInferencesPerSecond: 0.5 }, rate: 0.5, note: /raised to 0.5/ },
    { name: 'a class with no latency figures gets the default device time', classes: [cls('a', 10, 10, { p50: null })], opts: { defaultBaseMs: 3 }, rate: 1, note: /no latency figures/ },
  ])('$name', ({ classes, opts, rate, note }) => {
    const plan = twinScenario(shape(classes), {}, { model, ...opts });
    expect(plan.inferencesPerSecond).toBe(rate);
    expect(plan.notes.some((n) => note.test(n)), plan.notes.join('\n')).toBe(true);
  });

  it('null hardware runs as generic; no baseline file means no baseline rollout', () => {
    const plan = twinScenario(shape([cls(null, 3, 3)]), {}, { model: { candidateFile: '/tmp/c.onnx' } });
    expect(plan.scenario.fleet.groups![0].hardware).toBe('generic');
    expect(plan.scenario.baseline).toBe(false);
  });

  it('an empty target is refused', () => {
    expect(() => twinScenario(shape([]), {}, { model })).toThrow(/matches no device/);
  });
});

describe('failureKinds', () => {
  it.each([
    ['failures 3 of 5 devices (60.0%) reached the limit (>= 1 devices and >= 5.0%)', 'install-failures'],
    ['inference error rate 34.63% over the 2.00% limit', 'error-rate'],
    ["p95 latency 4.50 ms is 3.00x the previous model's 1.50 ms (limit 1.5x)", 'p95-latency'],
    ["p99 latency 9.00 ms is 3.00x the previous model's 3.00 ms (limit 2x)", 'p99-latency'],
    ['drift on output:probs: PSI 0.412 (critical; warn 0.1, alert 0.2, critical 0.3)', 'drift'],
    ['sequential test: latency shown worse on 10 devices, p95 ratio 1.616 (CS lower 1.452 vs halt above 1.1, upper 1.800 vs margin 1.2), alpha 0.05', 'p95-latency'],
    ['sequential test: error rate shown worse on 7 devices, +4.10 points (CS lower +2.00 vs halt above +0.5), alpha 0.05', 'error-rate'],
    ['something new', 'other'],
  ])('%s -> %s', (f, kind) => {
    expect(failureKinds([f])).toEqual([kind]);
  });
});

describe('rehearsalLines (the human report)', () => {
  it('a halt: status, wave, reasons, touched devices, cost, one row per judged wave', async () => {
    const { rehearsalLines } = await import('../../cli/commands/rehearse.ts');
    const lines = rehearsalLines({
      prediction: { status: 'reverted', haltWave: 1, reasons: ["p95 latency 4.90 ms is 2.80x the previous model's 1.75 ms (limit 1.5x)"], devicesTouched: { twin: 5, real: 50 }, campaignMs: 10_256 },
      twin: { devices: 90, realDevices: 900, cost: { ratio: 2.893, candidateMs: 4.0466, baselineMs: 1.3986 } },
      waves: [{ wave: 1, gate: 'failed', atMs: 9_800, failures: ['p95 latency ...'], figures: { updated: 5, reporting: 5, inferences: 40, errors: 2, p95Ratio: 2.8046 } }],
    });
    expect(lines).toEqual([
      "prediction: reverted in wave 1: p95 latency 4.90 ms is 2.80x the previous model's 1.75 ms (limit 1.5x)",
      'devices touched: 5 of 90 twin devices (about 50 of 900 real)',
      'model cost: candidate 2.89x the baseline (4.047 vs 1.399 ms on this host)',
      '',
      'WAVE  GATE    AT     UPDATED  REPORTING  INFERENCES  ERRORS  P95 RATIO  FAILURES',
      '1     failed  9.8 s  5        5          40          5.00%   2.80       p95 latency ...',
    ]);
  });

  it('a completed run; a wave with no latency figures shows "-"', async () => {
    const { rehearsalLines } = await import('../../cli/commands/rehearse.ts');
    const lines = rehearsalLines({
      prediction: { status: 'completed', haltWave: null, reasons: [], devicesTouched: { twin: 90, real: 90 }, campaignMs: 14_667 },
      twin: { devices: 90, realDevices: 90, cost: null },
      waves: [{ wave: 1, gate: 'passed', atMs: 3_000, failures: [], figures: { updated: 5, reporting: 5, inferences: 0, errors: 0, p95Ratio: null } }],
    });
    expect(lines[0]).toBe('prediction: completed in 14.7 s');
    expect(lines).toHaveLength(5);
    expect(lines[4]).toBe('1     passed  3.0 s  5        5          0           -       -          -');
  });
});

// The sequential canary test, table-tested without a server, and its false-halt rate measured on
// seeded simulated campaigns (bench/canary-sim.ts: the same decision code on a heterogeneous fleet).
import { describe, expect, it } from 'vitest';
import { DEFAULT_SIM, gatesWith, runMany } from '../../bench/canary-sim.ts';
import { CampaignRequest, GateConfig, SequentialConfig, WaveSpec } from '../../server/rollouts/campaign-config.ts';
import { join } from 'node:path';
import { openDatabase } from '../../server/db/database.ts';
import { CampaignStore, type CampaignRow } from '../../server/rollouts/campaign-store.ts';
import { tempDir } from '../helpers/harness.ts';
import { decideEarly, decideWithFigures, type GateFigures, type WaveProgress } from '../../server/rollouts/decide.ts';
import {
  confidenceSequence, csRadiusT, deviceObservation, minDecidableDevices, sequentialVerdict, type DeviceEvidence, type SequentialSettings, type WindowFigures,
} from '../../server/rollouts/sequential.ts';

const settings: SequentialSettings = { ...SequentialConfig.parse({}), minLatencyDeltaMs: 1 };
const win = (p95: number, count = 30, errors = 0): WindowFigures => ({ count, errors, p95 });
/** a device with `prev` windows on the previous model and `cand` on the candidate */
const device = (i: number, prev: WindowFigures[], cand: WindowFigures[], wave = 0): DeviceEvidence => ({ deviceId: `d${i}`, wave, previous: prev, candidate: cand });
/** n devices of different speeds (5..50 ms), each `factor` times slower on the candidate, with a little deterministic noise */
const fleet = (n: number, factor: number, opts: { errPrev?: number; errCand?: number; wave?: number } = {}) => Array.from({ length: n }, (_, i) => {
  const base = 5 + ((i * 37) % 46);
  const jitter = (k: number) => 1 + 0.05 * Math.sin(i * 7 + k);
  // the first candidate window is skipped (it may straddle the switch): here it holds the previous model's latency
  return device(i, [1, 2, 3].map((k) => win(base * jitter(k), 30, opts.errPrev ?? 0)), [win(base), ...[4, 5, 6].map((k) => win(base * factor * jitter(k), 30, opts.errCand ?? 0))], opts.wave ?? 0);
});

describe('the confidence sequence', () => {
  it('has no finite bound below 5 observations at alpha 0.05 (g = 1), and one from 5 on', () => {
    expect([2, 3, 4].map((n) => csRadiusT(n, 0.05))).toEqual([Infinity, Infinity, Infinity]);
    expect(Number.isFinite(csRadiusT(5, 0.05))).toBe(true);
    expect(minDecidableDevices(0.05)).toBe(5);
    expect(minDecidableDevices(0.01)).toBe(6);
  });

  it('inverts the t-mixture e-value: at the bound, E_n = 1/alpha', () => {
    for (const [n, a] of [[5, 0.05], [20, 0.05], [200, 0.01], [1000, 0.1]]) {
      const t = csRadiusT(n, a), nu = n - 1, r = 1 + n;
      const e = r ** -0.5 * ((1 + (t * t) / nu) / (1 + (t * t) / (nu * r))) ** (n / 2);
      expect(e).toBeCloseTo(1 / a, 6);
    }
  });

  it('is mean ± t* s / sqrt(n), and widens to the sd floor', () => {
    const xs = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6];
    const cs = confidenceSequence(xs, 0.05);
    const sd = Math.sqrt(xs.reduce((a, x) => a + (x - 0.35) ** 2, 0) / 5);
    expect(cs.mean).toBeCloseTo(0.35, 12);
    expect(cs.upper - cs.mean).toBeCloseTo((csRadiusT(6, 0.05) * sd) / Math.sqrt(6), 12);
    const floored = confidenceSequence(xs, 0.05, 1);
    expect(floored.sd).toBe(1);
    expect(floored.lower).toBeLessThan(cs.lower);
  });
});

describe('deviceObservation', () => {
  it('pairs the K candidate windows after the first with the last K previous ones, skipping empty windows', () => {
    const o = deviceObservation(device(0, [win(100), win(10), win(0, 0), win(10)], [win(0, 0), win(10), win(20, 40, 4), win(20, 40, 0), win(999)]), 2, 0);
    expect(o?.latency).toBeCloseTo(Math.log(2), 12); // 100 ms was the third-last window: not used; 10 ms straddled the switch; 999 ms is the fourth
    expect(o?.error).toEqual({ diff: 4 / 80, candidateInferences: 80, previousInferences: 60, candidateErrors: 4, previousErrors: 0 });
  });

  it.each([
    ['too few candidate windows (the first does not count)', device(0, [win(10)], [win(10), win(10), win(10)])],
    ['no previous windows', device(0, [], [win(10), win(10), win(10), win(10)])],
    ['previous windows without inferences', device(0, [win(0, 0)], [win(10), win(10), win(10), win(10)])],
  ])('is null with %s', (_n, e) => {
    expect(deviceObservation(e, 3, 1)).toBeNull();
  });

  it('reads a sub-millisecond 2x as a small ratio (latency floor of minLatencyDeltaMs)', () => {
    const o = deviceObservation(device(0, [win(0.05)], [win(0.05), win(0.1)]), 1, 1);
    expect(Math.exp(o!.latency!)).toBeCloseTo(1.1 / 1.05, 12);
  });
});

describe('sequentialVerdict', () => {
  it.each([
    ['4 paired devices: unavailable', fleet(4, 3), 'unavailable'],
    ['5 devices 3x slower: halt', fleet(5, 3), 'halt'],
    ['5 devices 1.05x (well under the 1.2x margin), no errors: wait (5 devices cannot show the error rate within 1 point)', fleet(5, 1.05), 'wait'],
    ['40 devices equal, no errors: advance', fleet(40, 1), 'advance'],
    ['40 devices 1.05x: advance (slower, but shown within the 1.2x margin and not beyond the 1.1x halt ratio)', fleet(40, 1.05), 'advance'],
    ['40 devices 1.3x: halt (shown beyond the 1.1x halt ratio)', fleet(40, 1.3), 'halt'],
    ['6 devices 1.15x: wait (between the halt ratio and the margin, not yet shown either way)', fleet(6, 1.15), 'wait'],
    ['40 devices equal, errors 1/30 -> 10/30 per window: halt on errors', fleet(40, 1, { errPrev: 1, errCand: 10 }), 'halt'],
  ])('%s', (_n, ev, decision) => {
    expect(sequentialVerdict(ev, settings, 0).decision).toBe(decision);
  });

  it('states the statistic and the evidence in the metric units', () => {
    const v = sequentialVerdict(fleet(5, 3), settings, 0);
    expect(v.latency.state).toBe('worse');
    expect(v.latency.estimate).toBeCloseTo(Math.exp(v.latency.estimate === null ? 0 : Math.log(v.latency.estimate)), 12);
    expect(v.latency.estimate!).toBeGreaterThan(2.8);
    expect(v.latency.lowerBound!).toBeGreaterThan(1);
    expect(v.latency.margin).toBeCloseTo(1.2, 12);
    expect(v.latency.haltAbove).toBe(1.1);
    expect(v.errors).toMatchObject({ n: 5, estimate: 0, state: 'undecided', haltAbove: 0.5, margin: 1 });
    expect(v.devices).toEqual({ paired: 5, observed: 5, observedInWave: 5, pairedInWave: 5 });
    expect(v.reason).toMatch(/^sequential test: latency shown worse on 5 devices, p95 ratio 2\.\d{3} \(CS lower 2\.\d{3} vs halt above 1\.1, upper 3\.\d{3} vs margin 1\.2\), alpha 0\.05$/); // (3x + 1 ms) / (1x + 1 ms) on 5..50 ms devices);
  });

  it('does not advance a wave before enough of its own devices are observed', () => {
    const earlier = fleet(60, 1, { wave: 0 });
    const current = fleet(10, 1, { wave: 1 }).map((d, i) => ({ ...d, deviceId: `w1-${i}`, candidate: i < 4 ? d.candidate : d.candidate.slice(0, 2) }));
    const v = sequentialVerdict([...earlier, ...current], settings, 1);
    expect(v.devices).toEqual({ paired: 70, observed: 64, observedInWave: 4, pairedInWave: 10 });
    expect(v.decision).toBe('wait');
    expect(v.reason).toMatch(/4 of this wave's devices observed, needs 5/);
  });

  it('devices without a previous model count for nothing', () => {
    const ev = fleet(8, 3).map((d, i) => (i < 4 ? { ...d, previous: [] } : d));
    expect(sequentialVerdict(ev, settings, 0)).toMatchObject({ decision: 'unavailable', devices: { paired: 4 } });
  });
});

describe('decide.ts with the sequential test', () => {
  const gates = GateConfig.parse({});
  const waves = [5, 100].map((percent) => WaveSpec.parse({ percent, soakSeconds: 60, minReporting: 2, minInferences: 100 }));
  const progress = (p: Partial<WaveProgress> = {}): WaveProgress => ({ inWaves: 40, pending: 0, inFlight: 0, updated: 40, failed: 0, reverted: 0, settledAt: 0, ...p });
  const figures = (evidence: DeviceEvidence[]): GateFigures => ({ reporting: 40, inferences: 4000, errors: 0, latency: null, drift: [], evidence });
  const input = (p: Partial<WaveProgress> = {}, now = 70_000, g = gates) => ({ status: 'running' as const, wave: 0, waves, gates: g, progress: progress(p), now });

  it('halts on the test with its reason first and the evidence in the verdict', () => {
    const step = decideWithFigures(input(), figures(fleet(40, 3)));
    expect(step.kind).toBe('halt');
    if (step.kind !== 'halt') return;
    expect(step.verdict.failures[0]).toMatch(/^sequential test: latency shown worse on 40 devices/);
    expect(step.verdict.sequential?.decision).toBe('halt');
  });

  it('holds an undecided wave until the soak maximum, then lets the fixed limits decide (or halts, if so configured)', () => {
    const undecided = fleet(5, 1.05);
    const long = GateConfig.parse({ sequential: { soakMaxSeconds: 300 } });
    const held = decideWithFigures(input({}, 70_000, long), figures(undecided));
    expect(held).toMatchObject({ kind: 'hold' });
    if (held.kind === 'hold') expect(held.why).toMatch(/sequential test undecided on 5 devices.*decides within 230 s/);
    const atMax = decideWithFigures(input({}, 300_000, long), figures(undecided));
    expect(atMax.kind).toBe('advance');
    if (atMax.kind === 'advance') expect(atMax.verdict.warnings[0]).toMatch(/undecided at the soak maximum \(300 s\).*judged by the fixed limits alone/);
    const strict = GateConfig.parse({ sequential: { soakMaxSeconds: 300, atSoakMax: 'halt' } });
    expect(decideWithFigures(input({}, 300_000, strict), figures(undecided)).kind).toBe('halt');
    // default soak maximum: the wave's own soakSeconds (60 s), already over at 70 s
    expect(decideWithFigures(input(), figures(undecided)).kind).toBe('advance');
  });

  it('judges by the fixed limits alone when the test is off or unavailable', () => {
    const off = GateConfig.parse({ sequential: { enabled: false } });
    expect(decideWithFigures(input({}, 70_000, off), figures(fleet(40, 1.3))).kind).toBe('advance');
    const few = decideWithFigures(input(), figures(fleet(3, 3)));
    expect(few.kind).toBe('advance'); // 3x on 3 devices: the fixed limits see no latency figures here
    if (few.kind === 'advance') expect(few.verdict.warnings[0]).toMatch(/unavailable: 3 devices.*needs 5/);
  });

  it('decideEarly: halts a wave still in flight, advances a settled one before its soak ends, else keeps holding', () => {
    expect(decideEarly(input({ inFlight: 10, updated: 30, settledAt: null }, 1000), figures(fleet(30, 3)))?.kind).toBe('halt');
    expect(decideEarly(input({ inFlight: 10, updated: 30, settledAt: null }, 1000), figures(fleet(30, 1)))).toBeNull();
    expect(decideEarly(input({}, 1000), figures(fleet(40, 1)))?.kind).toBe('advance');
    const minSoak = GateConfig.parse({ sequential: { minSoakSeconds: 30 } });
    expect(decideEarly(input({}, 1000, minSoak), figures(fleet(40, 1)))).toBeNull();
    expect(decideEarly(input({}, 31_000, minSoak), figures(fleet(40, 1)))?.kind).toBe('advance');
    expect(decideEarly(input({}, 1000, GateConfig.parse({ sequential: { enabled: false } })), figures(fleet(40, 3)))).toBeNull();
  });

  it('[#19] a release: each model judged on its own windows; any model worse halts naming it, advance needs every one non-inferior', () => {
    const withModels = (evidence: DeviceEvidence[], models: Record<string, DeviceEvidence[]>): GateFigures =>
      ({ ...figures(evidence), modelEvidence: Object.entries(models).map(([modelId, ev]) => ({ modelId, evidence: ev })) });
    // the device-wide figures fine, emb 3x: halted, emb named first and in failedModels
    const halt = decideWithFigures(input(), withModels(fleet(40, 1), { mel: fleet(40, 1), emb: fleet(40, 3), kws: fleet(40, 1) }));
    expect(halt.kind).toBe('halt');
    if (halt.kind !== 'halt') return;
    expect(halt.verdict.failures[0]).toMatch(/^model emb: sequential test: latency shown worse on 40 devices, .*, alpha 0\.0125$/); // 4 tests share alpha 0.05
    expect(halt.verdict.failedModels).toEqual(['emb']);
    expect([halt.verdict.sequential?.decision, halt.verdict.sequential?.model]).toEqual(['halt', 'emb']);
    expect(halt.verdict.sequential?.models?.map((m) => [m.modelId, m.decision])).toEqual([['mel', 'advance'], ['emb', 'halt'], ['kws', 'advance']]);
    // worse device-wide and on kws: the device-wide figures decide (no model named), kws still halts on its own
    const both = decideWithFigures(input(), withModels(fleet(40, 3), { kws: fleet(40, 3) }));
    expect(both.kind === 'halt' && [both.verdict.failures[0].slice(0, 35), both.verdict.sequential?.model]).toEqual(['sequential test: latency shown wors', undefined]);
    // every model fine: advances early on the test; one model undecided (a few devices call it): waits
    expect(decideEarly(input({}, 1000), withModels(fleet(40, 1), { mel: fleet(40, 1), emb: fleet(40, 1) }))?.kind).toBe('advance');
    const waiting = withModels(fleet(40, 1), { mel: fleet(40, 1), emb: fleet(5, 1.05) });
    expect(decideEarly(input({}, 1000), waiting)).toBeNull();
    const held = decideWithFigures(input({}, 30_000, GateConfig.parse({ sequential: { soakMaxSeconds: 300 } })), waiting);
    expect(held.kind === 'hold' && held.why).toMatch(/^wave 1: model emb: sequential test undecided on 5 devices/);
    // the primary unchanged (no device-wide pairing) and kws kept (no evidence): emb's test decides alone, the others are named
    const embOnly = decideEarly(input({}, 1000), withModels([], { mel: [], emb: fleet(40, 1), kws: [] }));
    expect(embOnly?.kind).toBe('advance');
    if (embOnly?.kind === 'advance') {
      expect(embOnly.verdict.sequential?.model).toBe('emb');
      expect(embOnly.verdict.sequential?.reason).toMatch(/^model emb: sequential test: non-inferior on 40 devices, .*; unavailable \(fixed limits only\): device-wide, model mel, model kws$/);
    }
    // no test can decide: unavailable, as for a campaign of one bundle
    const none = decideWithFigures(input(), withModels(fleet(3, 1), { emb: fleet(3, 1) }));
    expect(none.kind === 'advance' && none.verdict.warnings[0]).toMatch(/^sequential test unavailable: 3 devices/);
    // without per-model evidence (a campaign of one bundle) nothing changes
    const single = decideWithFigures(input(), figures(fleet(40, 1)));
    expect(single.kind).toBe('advance');
    if (single.kind === 'advance') expect(single.verdict.sequential?.models).toBeUndefined();
  });

  it('a config without the sequential block parses with the test on; bad settings are refused with their path', () => {
    expect(GateConfig.parse({}).sequential).toMatchObject({ enabled: true, alpha: 0.05, beta: 0.05, latencyMargin: 1.2, errorMarginPoints: 1, latencyHaltRatio: 1.1, errorHaltPoints: 0.5, minDevices: 5, windowsPerDevice: 3, soakMaxSeconds: null, atSoakMax: 'guardrails' });
    const bad = GateConfig.safeParse({ sequential: { alpha: 0.9 } });
    expect(bad.success).toBe(false);
    expect(bad.error?.issues[0].path).toEqual(['sequential', 'alpha']);
    expect(GateConfig.safeParse({ sequential: { latencyMargin: 1 } }).success).toBe(false);
    expect(GateConfig.safeParse({ sequential: { latencyMargin: 1.1, latencyHaltRatio: 1.1 } }).error?.issues[0].path).toEqual(['sequential', 'latencyHaltRatio']);
    expect(GateConfig.safeParse({ sequential: { typo: 1 } }).success).toBe(false);
  });
});

describe('stored campaigns', () => {
  it('a campaign stored before the sequential test existed is read with it off; a new one keeps its settings', () => {
    const db = openDatabase(join(tempDir('fleet-seq-'), 'fleet.db'));
    try {
      const store = new CampaignStore(db);
      const stored = CampaignRequest.parse({ manifestSha256: 'a'.repeat(64), gates: { sequential: { alpha: 0.01 } } });
      const legacy = JSON.parse(JSON.stringify(stored));
      delete legacy.gates.sequential;
      const row = (config: unknown) => ({ config_json: JSON.stringify(config) }) as CampaignRow;
      expect(store.config(row(legacy)).gates.sequential.enabled).toBe(false);
      expect(store.config(row(stored)).gates.sequential).toMatchObject({ enabled: true, alpha: 0.01 });
    } finally {
      db.close();
    }
  });
});

describe('measured on seeded simulated campaigns (200 heterogeneous devices, waves 1%/10%/50%/100%)', () => {
  const sim = { ...DEFAULT_SIM, devices: 200 };
  it('halts at most alpha (5%) of 2,000 campaigns whose candidate equals the previous model', () => {
    const s = runMany(2000, 42, { ...sim, latencyFactor: 1, errorPoints: 0, gates: gatesWith({}) });
    expect(s.runs).toBe(2000);
    // the fixed limits (kept as guardrails) halt a few good 5-device canaries on noise too: both counted
    expect(s.haltedBySequential + s.haltedByGuardrail).toBe(Math.round(s.haltRate * 2000));
    expect(s.haltedBySequential / 2000).toBeLessThanOrEqual(0.05);
    expect(s.haltRate).toBeLessThanOrEqual(0.05);
    console.log(`false halts of 2,000 good campaigns: ${s.haltedBySequential} by the sequential test, ${s.haltedByGuardrail} by the fixed limits (${(s.haltRate * 100).toFixed(2)}%)`);
  });

  it('with no tolerance (halt at any slowdown or error increase) still halts at most alpha of 2,000 good campaigns', () => {
    const s = runMany(2000, 4242, { ...sim, latencyFactor: 1, errorPoints: 0, gates: gatesWith({ latencyHaltRatio: 1, errorHaltPoints: 0 }) });
    expect(s.haltedBySequential / 2000).toBeLessThanOrEqual(0.05);
    console.log(`strict halt thresholds, 2,000 good campaigns: ${s.haltedBySequential} halted by the sequential test, ${s.haltedByGuardrail} by the fixed limits`);
  });

  it('halts every one of 200 campaigns with a 3x latency candidate in wave 1 (5 devices touched), nearly all on the sequential test', () => {
    const s = runMany(200, 7, { ...sim, latencyFactor: 3, errorPoints: 0, gates: gatesWith({}) });
    expect(s).toMatchObject({ runs: 200, haltRate: 1, haltedInWave1Rate: 1, medianTouched: 5 });
    // a canary with one very fast device (the 1 ms floor shrinks its ratio) can stay undecided: the fixed limits halt it at the soak's end, still in wave 1
    expect(s.haltedBySequential).toBeGreaterThanOrEqual(198);
  });
});

// Canary statistics: paired per-device comparisons and an always-valid sequential test per guarded
// metric. Pure: no clock, no database; the engine hands in each device's telemetry windows and gets a
// decision with its evidence. docs/canary-statistics.md explains the test for operators.
//
// The unit is a device. A device of the campaign that reported telemetry on its previous model gives one
// paired observation per metric once it has `windowsPerDevice` windows with inferences on the candidate:
//   latency  d = mean ln(p95 + c) over its first K candidate windows (after the first, which may hold
//              inferences of the previous model: a window that straddles the switch is reported under
//              the model active at its end) - mean ln(p95 + c) over its last K
//              windows on the previous model (c = minLatencyDeltaMs: sub-millisecond timer noise shrinks
//              toward a ratio of 1 instead of reading as 2x);
//   errors   e = errors/inferences over those candidate windows - errors/inferences over those previous ones.
// Each device is compared with itself, so a fleet whose devices differ tenfold in speed does not drown
// a 1.2x regression. An observation is frozen once made (the first K candidate windows never change),
// so the observations form one growing sequence over the campaign, in the order devices completed.
//
// The test: for n >= 2 observations with mean m and standard deviation s, and a hypothesised mean mu,
// t = sqrt(n) (m - mu) / s and nu = n - 1, the Gaussian-mixture t-test e-value (prior g on the
// standardised effect, right-Haar prior on the scale)
//   E_n(mu) = (1 + n g)^(-1/2) * [ (1 + t^2/nu) / (1 + t^2 / (nu (1 + n g))) ]^(n/2)
// (Gönen, Johnson, Lu & Westfall 2005, "The Bayesian two-sample t test", eq. for the JZS-like fixed-g
// Bayes factor; that it is a nonnegative martingale under mu, so P(sup_n E_n(mu) >= 1/a) <= a by Ville's
// inequality, is shown by Pérez-Ortiz, Lardy, de Heide & Grünwald 2024, "E-statistics, group invariance
// and anytime-valid testing", Ann. Statist.; Lai 1976, "On confidence sequences", gave the t-mixture
// confidence sequence). Inverting it gives a confidence sequence valid at every look at once:
//   CS_n = m ± t*_n s / sqrt(n),  t*_n^2 = nu (K - 1) / (1 - K / r),  r = 1 + n g,  K = (sqrt(r) / a)^(2/n),
// and no finite bound (no decision possible yet) while K >= r. The guarantee assumes the paired
// differences of devices are independent and roughly normal (means of log latencies and error
// fractions over several windows are); the bench and a test measure it on heterogeneous fleets.
//
// Decisions, per metric with a halt threshold H and a non-inferiority margin M > H >= 0 (latency:
// ln(latencyHaltRatio), ln(latencyMargin); errors: errorHaltPoints/100, errorMarginPoints/100):
//   worse          the (1 - alpha) CS lies above H: the candidate is shown worse than the previous model
//                  by more than the tolerated H;
//   non-inferior   the (1 - beta) CS lies below M: the candidate is shown to be less than M worse;
//   undecided      otherwise (between H and M is an indifference zone: either answer is acceptable).
// The campaign halts as soon as any metric is worse (the chance that a candidate no worse than H, in
// particular one equal to the previous model, is ever halted is <= alpha over the whole campaign,
// however often it is looked at), and a wave may advance once every metric is non-inferior (the
// chance of advancing a candidate worse than a margin is <= beta). H > 0 by default (1.1x, 0.5 points)
// so a fleet of thousands does not halt a 3% slowdown that is real but harmless, or a drift of the
// host between the before and after windows. Errors whose observed spread is zero (no errors at all on a few devices) are
// judged with a binomial floor on the spread, so "no errors seen" is not read as certainty.
import type { SequentialConfig } from './campaign-config.ts';

/** Prior scale g of the standardised effect: 1 lets a wave decide from 5 devices at alpha 0.05. */
export const PRIOR_G = 1;

export interface WindowFigures { count: number; errors: number; p95: number }

export interface DeviceEvidence {
  deviceId: string;
  /** the wave the device belongs to (0-based) */
  wave: number;
  /** windows on the previous model, oldest first (only the last K are used) */
  previous: WindowFigures[];
  /** windows on the candidate, oldest first (the first is skipped, the next K are used) */
  candidate: WindowFigures[];
}

export interface Observation {
  deviceId: string;
  wave: number;
  /** log ratio of the device's p95 on the candidate over its previous model; null without latency figures on both */
  latency: number | null;
  error: { diff: number; candidateInferences: number; previousInferences: number; candidateErrors: number; previousErrors: number };
}

export type MetricState = 'worse' | 'non-inferior' | 'undecided';

export interface MetricEvidence {
  /** devices observed */
  n: number;
  /** point estimate, in the metric's unit (latency: ratio; errors: percentage points) */
  estimate: number | null;
  /** the (1 - alpha) confidence sequence's lower bound: above `haltAbove` means worse */
  lowerBound: number | null;
  /** the (1 - beta) confidence sequence's upper bound: below `margin` means non-inferior */
  upperBound: number | null;
  haltAbove: number;
  margin: number;
  state: MetricState;
}

export type SequentialDecision = 'halt' | 'advance' | 'wait' | 'unavailable';

export interface SequentialVerdict {
  decision: SequentialDecision;
  reason: string;
  /** paired: devices with telemetry on their previous model; observed: of those, devices with a frozen observation */
  devices: { paired: number; observed: number; observedInWave: number; pairedInWave: number };
  latency: MetricEvidence;
  errors: MetricEvidence;
  alpha: number;
  beta: number;
  /** [#19] a release campaign: the model whose own test decided this verdict (absent: the device-wide figures did) */
  model?: string;
  /** [#19] a release campaign: each changed model's own test */
  models?: { modelId: string; decision: SequentialDecision; reason: string; devices: SequentialVerdict['devices']; latency: MetricEvidence; errors: MetricEvidence }[];
}

export type SequentialSettings = Pick<SequentialConfig, 'alpha' | 'beta' | 'latencyMargin' | 'errorMarginPoints' | 'latencyHaltRatio' | 'errorHaltPoints' | 'minDevices' | 'windowsPerDevice'> & { minLatencyDeltaMs: number };

/** Candidate windows read before a device's observation: the first may straddle the switch from the previous model. */
export const CANDIDATE_WINDOWS_SKIPPED = 1;

/** The device's frozen paired observation, or null while it has fewer than 1 + K candidate windows (or no previous ones). */
export function deviceObservation(e: DeviceEvidence, windows: number, latencyFloorMs: number): Observation | null {
  const cand = e.candidate.filter((w) => w.count > 0).slice(CANDIDATE_WINDOWS_SKIPPED, CANDIDATE_WINDOWS_SKIPPED + windows);
  const prev = e.previous.filter((w) => w.count > 0).slice(-windows);
  if (cand.length < windows || prev.length === 0) return null;
  const logLatency = (ws: WindowFigures[]) => {
    const ok = ws.filter((w) => w.count > w.errors && Number.isFinite(w.p95) && w.p95 >= 0);
    return ok.length ? ok.reduce((a, w) => a + Math.log(w.p95 + latencyFloorMs), 0) / ok.length : null;
  };
  const lc = logLatency(cand), lp = logLatency(prev);
  const sum = (ws: WindowFigures[], k: 'count' | 'errors') => ws.reduce((a, w) => a + w[k], 0);
  const cn = sum(cand, 'count'), ce = sum(cand, 'errors'), pn = sum(prev, 'count'), pe = sum(prev, 'errors');
  return {
    deviceId: e.deviceId, wave: e.wave,
    latency: lc === null || lp === null ? null : lc - lp,
    error: { diff: ce / cn - pe / pn, candidateInferences: cn, previousInferences: pn, candidateErrors: ce, previousErrors: pe },
  };
}

/** t*_n of the confidence sequence at level 1 - a after n observations; Infinity when no bound is finite yet. */
export function csRadiusT(n: number, a: number, g = PRIOR_G): number {
  if (n < 2) return Infinity;
  const nu = n - 1;
  const r = 1 + n * g;
  const k = Math.exp((2 / n) * (0.5 * Math.log(r) - Math.log(a)));
  if (k >= r) return Infinity;
  return Math.sqrt((nu * (k - 1)) / (1 - k / r));
}

/** Smallest n for which the confidence sequence at level 1 - a can have a finite bound at all. */
export function minDecidableDevices(a: number, g = PRIOR_G): number {
  for (let n = 2; n < 10_000; n++) if (Number.isFinite(csRadiusT(n, a, g))) return n;
  return Infinity;
}

export interface Interval { n: number; mean: number; sd: number; lower: number; upper: number }

/** The always-valid confidence sequence for the mean of xs at level 1 - a (sd raised to sdFloor if lower). */
export function confidenceSequence(xs: number[], a: number, sdFloor = 0): Interval {
  const n = xs.length;
  if (n === 0) return { n, mean: NaN, sd: NaN, lower: -Infinity, upper: Infinity };
  const mean = xs.reduce((s, x) => s + x, 0) / n;
  const variance = n > 1 ? xs.reduce((s, x) => s + (x - mean) ** 2, 0) / (n - 1) : 0;
  const sd = Math.max(Math.sqrt(variance), sdFloor);
  const t = csRadiusT(n, a);
  const radius = Number.isFinite(t) ? (sd === 0 ? 0 : (t * sd) / Math.sqrt(n)) : Infinity;
  return { n, mean, sd, lower: mean - radius, upper: mean + radius };
}

function judgeMetric(xs: number[], s: SequentialSettings, haltAbove: number, margin: number, sdFloor: number, toUnit: (x: number) => number): MetricEvidence {
  const halt = confidenceSequence(xs, s.alpha, sdFloor);
  const adv = confidenceSequence(xs, s.beta, sdFloor);
  const state: MetricState = xs.length >= s.minDevices && halt.lower > haltAbove ? 'worse'
    : xs.length >= s.minDevices && adv.upper < margin ? 'non-inferior' : 'undecided';
  const unit = (x: number) => (Number.isFinite(x) ? toUnit(x) : null);
  return { n: xs.length, estimate: xs.length ? toUnit(halt.mean) : null, lowerBound: unit(halt.lower), upperBound: unit(adv.upper), haltAbove: +toUnit(haltAbove).toPrecision(12), margin: +toUnit(margin).toPrecision(12), state };
}

/**
 * The binomial spread a device's error difference has at least: p(1-p)(1/n_candidate + 1/n_previous),
 * averaged over devices, with p the pooled error rate but never below 3 errors' worth of the inferences
 * seen ("rule of three"), so a few error-free devices do not prove a small error rate.
 */
export function errorSdFloor(obs: Observation[]): number {
  if (obs.length === 0) return 0;
  const inferences = obs.reduce((a, o) => a + o.error.candidateInferences + o.error.previousInferences, 0);
  const errs = obs.reduce((a, o) => a + o.error.candidateErrors + o.error.previousErrors, 0);
  const p = Math.min(0.5, Math.max(errs / inferences, 3 / inferences));
  const v = obs.reduce((a, o) => a + p * (1 - p) * (1 / o.error.candidateInferences + 1 / o.error.previousInferences), 0) / obs.length;
  return Math.sqrt(v);
}

/**
 * The sequential decision for the current wave from the observations made so far (all waves up to the
 * current one, one per device). `pairedInWave`: devices of the current wave that can give an
 * observation (they reported on their previous model); `paired`: the same over every wave so far.
 */
export function verdictFromObservations(obs: Observation[], s: SequentialSettings, wave: number, paired: number, pairedInWave: number): SequentialVerdict {
  const lat = obs.filter((o) => o.latency !== null).map((o) => o.latency as number);
  const latency = judgeMetric(lat, s, Math.log(s.latencyHaltRatio), Math.log(s.latencyMargin), 0, Math.exp);
  const errors = judgeMetric(obs.map((o) => o.error.diff), s, s.errorHaltPoints / 100, s.errorMarginPoints / 100, errorSdFloor(obs), (x) => x * 100);
  const observedInWave = obs.filter((o) => o.wave === wave).length;
  const devices = { paired, observed: obs.length, observedInWave, pairedInWave };
  const base = { devices, latency, errors, alpha: s.alpha, beta: s.beta };
  const f = (x: number | null, d = 3) => (x === null ? '-' : x.toFixed(d));
  const latText = `p95 ratio ${f(latency.estimate)} (CS lower ${f(latency.lowerBound)} vs halt above ${latency.haltAbove}, upper ${f(latency.upperBound)} vs margin ${latency.margin})`;
  const errText = `error rate ${f(errors.estimate, 2)} points (CS lower ${f(errors.lowerBound, 2)} vs halt above ${errors.haltAbove}, upper ${f(errors.upperBound, 2)} vs margin ${errors.margin})`;
  if (paired < s.minDevices) {
    return { ...base, decision: 'unavailable', reason: `sequential test unavailable: ${paired} devices have telemetry on their previous model, the test needs ${s.minDevices}` };
  }
  if (latency.state === 'worse') return { ...base, decision: 'halt', reason: `sequential test: latency shown worse on ${latency.n} devices, ${latText}, alpha ${s.alpha}` };
  if (errors.state === 'worse') return { ...base, decision: 'halt', reason: `sequential test: error rate shown worse on ${errors.n} devices, ${errText}, alpha ${s.alpha}` };
  const waveEnough = observedInWave >= Math.min(s.minDevices, pairedInWave);
  if (latency.state === 'non-inferior' && errors.state === 'non-inferior' && waveEnough) {
    return { ...base, decision: 'advance', reason: `sequential test: non-inferior on ${obs.length} devices, ${latText}; ${errText}` };
  }
  const missing = waveEnough ? '' : `; ${observedInWave} of this wave's devices observed, needs ${Math.min(s.minDevices, pairedInWave)}`;
  return { ...base, decision: 'wait', reason: `sequential test undecided on ${obs.length} devices: ${latText}; ${errText}${missing}` };
}

/** The sequential decision from the devices' telemetry windows (see verdictFromObservations). */
export function sequentialVerdict(evidence: DeviceEvidence[], s: SequentialSettings, wave: number): SequentialVerdict {
  const obs: Observation[] = [];
  for (const e of evidence) {
    const o = deviceObservation(e, s.windowsPerDevice, s.minLatencyDeltaMs);
    if (o) obs.push(o);
  }
  const paired = evidence.filter((e) => e.previous.some((w) => w.count > 0));
  return verdictFromObservations(obs, s, wave, paired.length, paired.filter((e) => e.wave === wave).length);
}

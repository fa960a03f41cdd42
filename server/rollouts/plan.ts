// Plan before you run (fleetctl campaigns plan): for a campaign config and a fleet size, how many devices
// and inferences each wave needs for the sequential test (sequential.ts) to detect a given regression, or
// to let a good model advance, at the configured alpha and beta. Pure.
//
// The test halts once mean - t*_a(n) s / sqrt(n) > ln(haltRatio). With per-device observations of spread
// sigma and a true log ratio mu, it does so with probability ~power once
//   sqrt(n) (mu - ln(haltRatio)) / sigma >= t*_a(n) + z_power
// (the usual normal-approximation power formula with the confidence sequence's t* in place of the fixed
// z; sigma assumed known). Errors alike, with sigma^2 = p1(1-p1)/m + p0(1-p0)/m per device for m
// inferences per device on each model. An advance of a candidate equal to the previous model needs
//   sqrt(n) ln(margin) / sigma >= t*_b(n) + z_power.
import type { CampaignRequest } from './campaign-config.ts';
import { waveBoundaries } from './decide.ts';
import { csRadiusT, minDecidableDevices } from './sequential.ts';

export interface PlanAssumptions {
  /** regression to detect: p95 ratio (e.g. 1.2) and error-rate increase in points (e.g. 1) */
  latencyRegression: number;
  errorRegressionPoints: number;
  /** spread (sd) of one device's log p95 ratio between its K-window means on the two models (0.1: about 10%) */
  latencySd: number;
  /** the previous model's error rate, in points */
  baselineErrorPoints: number;
  /** inferences per telemetry window on one device */
  inferencesPerWindow: number;
  /** chance of deciding when the effect is there (e.g. 0.8) */
  power: number;
}

export interface WavePlan {
  wave: number;
  /** devices the wave adds, and the test's devices so far (every wave up to this one) */
  devices: number;
  cumulativeDevices: number;
  detectsLatency: boolean;
  detectsErrors: boolean;
  advancesGood: boolean;
  /** inferences per device on the candidate (and as many on the previous model) for the +errors regression to be detected with this many devices; null: no number of inferences is enough */
  inferencesPerDeviceForErrors: number | null;
}

export interface CampaignPlan {
  fleetDevices: number;
  alpha: number; beta: number;
  assumptions: PlanAssumptions & { windowsPerDevice: number };
  /** devices the test needs in all: to have any finite bound, to detect each regression, to advance a good model */
  needs: { anyDecision: number; latency: number | null; errors: number | null; advanceGood: number | null };
  waves: WavePlan[];
  warnings: string[];
}

function probit(p: number): number {
  // Acklam's rational approximation of the normal quantile (abs error < 1.2e-9)
  const a = [-39.69683028665376, 220.9460984245205, -275.9285104469687, 138.357751867269, -30.66479806614716, 2.506628277459239];
  const b = [-54.47609879822406, 161.5858368580409, -155.6989798598866, 66.80131188771972, -13.28068155288572];
  const c = [-0.007784894002430293, -0.3223964580411365, -2.400758277161838, -2.549732539343734, 4.374664141464968, 2.938163982698783];
  const d = [0.007784695709041462, 0.3224671290700398, 2.445134137142996, 3.754408661907416];
  const q = Math.min(p, 1 - p);
  let x: number;
  if (q < 0.02425) {
    const r = Math.sqrt(-2 * Math.log(q));
    x = (((((c[0] * r + c[1]) * r + c[2]) * r + c[3]) * r + c[4]) * r + c[5]) / ((((d[0] * r + d[1]) * r + d[2]) * r + d[3]) * r + 1);
    x = -x;
  } else {
    const r = (q - 0.5) ** 2;
    x = ((((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * (q - 0.5)) / (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
  }
  return p < 0.5 ? -Math.abs(x) : Math.abs(x);
}

/** Does the test decide with n devices, for a standardised distance `effect / sigma` at level a? */
const enough = (n: number, effect: number, sigma: number, a: number, z: number) =>
  effect > 0 && (sigma === 0 || Math.sqrt(n) * (effect / sigma) >= csRadiusT(n, a) + z);

function devicesNeeded(effect: number, sigma: number, a: number, z: number, cap = 1_000_000): number | null {
  if (!(effect > 0)) return null;
  let lo = minDecidableDevices(a), hi = lo;
  while (!enough(hi, effect, sigma, a, z)) { hi *= 2; if (hi > cap) return null; }
  while (lo < hi) { const mid = Math.floor((lo + hi) / 2); if (enough(mid, effect, sigma, a, z)) hi = mid; else lo = mid + 1; }
  return lo;
}

export function planCampaign(config: CampaignRequest, fleetDevices: number, a: PlanAssumptions): CampaignPlan {
  const s = config.gates.sequential;
  const z = probit(a.power);
  const k = s.windowsPerDevice;
  const m = a.inferencesPerWindow * k; // inferences per device on each model
  const p0 = a.baselineErrorPoints / 100, p1 = p0 + a.errorRegressionPoints / 100;
  const latEffect = Math.log(a.latencyRegression) - Math.log(s.latencyHaltRatio);
  const errEffect = (a.errorRegressionPoints - s.errorHaltPoints) / 100;
  const errSd = (mm: number, q1: number) => Math.sqrt((q1 * (1 - q1) + p0 * (1 - p0)) / mm);
  const needs = {
    anyDecision: Math.max(s.minDevices, minDecidableDevices(Math.min(s.alpha, s.beta))),
    latency: devicesNeeded(latEffect, a.latencySd, s.alpha, z),
    errors: devicesNeeded(errEffect, errSd(m, p1), s.alpha, z),
    advanceGood: (() => {
      const l = devicesNeeded(Math.log(s.latencyMargin), a.latencySd, s.beta, z);
      const e = devicesNeeded(s.errorMarginPoints / 100, errSd(m, p0), s.beta, z);
      return l === null || e === null ? null : Math.max(l, e);
    })(),
  };
  const at = (need: number | null, n: number) => need !== null && n >= Math.max(need, s.minDevices);
  const bounds = fleetDevices > 0 ? waveBoundaries(config.waves, fleetDevices) : config.waves.map(() => 0);
  const waves: WavePlan[] = bounds.map((cum, i) => {
    const n = cum;
    // inferences per device that make the error regression detectable with n devices: sigma <= sqrt(n) effect / (t* + z)
    const t = csRadiusT(n, s.alpha);
    let inf: number | null = null;
    if (Number.isFinite(t) && errEffect > 0 && n >= s.minDevices) {
      const target = (Math.sqrt(n) * errEffect) / (t + z);
      inf = Math.ceil((p1 * (1 - p1) + p0 * (1 - p0)) / (target * target));
    }
    return {
      wave: i + 1, devices: cum - (i ? bounds[i - 1] : 0), cumulativeDevices: cum,
      detectsLatency: at(needs.latency, n), detectsErrors: at(needs.errors, n), advancesGood: at(needs.advanceGood, n),
      inferencesPerDeviceForErrors: inf,
    };
  });
  const warnings: string[] = [];
  const w1 = waves[0];
  if (!s.enabled) warnings.push('gates.sequential.enabled is false: waves are judged by the fixed limits alone');
  if (w1 && w1.cumulativeDevices < needs.anyDecision) {
    warnings.push(`wave 1 has ${w1.cumulativeDevices} devices: the sequential test needs at least ${needs.anyDecision} to decide anything; it is judged by the fixed limits alone`);
  }
  for (const w of waves) {
    if (w.cumulativeDevices < needs.anyDecision) continue;
    if (!w.detectsLatency) warnings.push(`wave ${w.wave} (${w.cumulativeDevices} devices so far) is too small to detect a ${a.latencyRegression}x p95 regression with ${Math.round(a.power * 100)}% power at alpha ${s.alpha}: it needs ${needs.latency ?? 'more than a million'} devices`);
    if (!w.detectsErrors) warnings.push(`wave ${w.wave} (${w.cumulativeDevices} devices so far) is too small to detect +${a.errorRegressionPoints} points of errors at ${m} inferences per device: it needs ${needs.errors ?? 'more than a million'} devices, or ${w.inferencesPerDeviceForErrors ?? 'no number of'} inferences per device`);
    if (w.detectsLatency && w.detectsErrors) break; // later waves only have more devices
  }
  if (fleetDevices > 0 && !waves.some((w) => w.advancesGood)) {
    warnings.push(`no wave is big enough for the test to show a good model within the margins (${needs.advanceGood ?? 'more than a million'} devices needed): every wave waits for its soak maximum and the fixed limits`);
  }
  return { fleetDevices, alpha: s.alpha, beta: s.beta, assumptions: { ...a, windowsPerDevice: k }, needs, waves, warnings };
}

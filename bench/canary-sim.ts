// A fast, pure simulation of a campaign's wave decisions, for the canaryStats bench section and the
// false-halt test. No server: seeded telemetry windows for a heterogeneous fleet go through the real
// decision code (sequential.ts deviceObservation + verdictFromObservations, decide.ts judgeGate) at
// every look, the way the engine reads them.
//
// The fleet: each device has its own baseline p95 (lognormal around 20 ms, a factor ~6 between the
// fastest and slowest tenth) and its own baseline error rate (lognormal around 0.5%); every telemetry
// window's p95 carries multiplicative noise (sd 15% in log) and its errors are Poisson. A candidate
// multiplies every device's latency by `latencyFactor` and adds `errorPoints` percentage points to its
// error rate. Devices of a wave start the candidate together; their windows arrive one per look, each
// device 0-2 looks late. The wave's soak (fixed gate) and its soak maximum (sequential) are `soakLooks`.
import { GateConfig, type SequentialConfig } from '../server/rollouts/campaign-config.ts';
import { judgeGate, waveBoundaries, type GateFigures, type WaveProgress } from '../server/rollouts/decide.ts';
import { CANDIDATE_WINDOWS_SKIPPED, deviceObservation, verdictFromObservations, type Observation, type WindowFigures } from '../server/rollouts/sequential.ts';
import { mulberry32 } from '../shared/prng.ts';

export interface SimOptions {
  devices: number;
  waves: { percent: number; minDevices: number }[];
  latencyFactor: number;
  errorPoints: number;
  /** looks (telemetry windows) a wave soaks before the fixed gate is judged; also the sequential soak maximum */
  soakLooks: number;
  inferencesPerWindow: number;
  gates: GateConfig;
}

export interface SimOutcome {
  halted: boolean;
  /** 1-based wave of the halt, null when the campaign completed */
  haltedInWave: number | null;
  /** 'sequential' or 'guardrail' (fixed limits) */
  haltedBy: 'sequential' | 'guardrail' | null;
  /** devices that received the candidate */
  touched: number;
  /** looks (windows) from the campaign's start to its end */
  looks: number;
}

export const DEFAULT_SIM: Omit<SimOptions, 'latencyFactor' | 'errorPoints' | 'gates'> = {
  devices: 1000,
  waves: [{ percent: 1, minDevices: 5 }, { percent: 10, minDevices: 1 }, { percent: 50, minDevices: 1 }, { percent: 100, minDevices: 1 }],
  soakLooks: 10,
  inferencesPerWindow: 30,
};

/** mulberry32, seeded (shared/prng.ts) */
export const rng = mulberry32;

function normal(r: () => number): number {
  return Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
}

function poisson(r: () => number, lambda: number): number {
  if (lambda > 30) return Math.max(0, Math.round(lambda + Math.sqrt(lambda) * normal(r)));
  const l = Math.exp(-lambda);
  let k = 0, p = 1;
  do { k++; p *= r(); } while (p > l);
  return k - 1;
}

interface SimDevice { base: number; errRate: number; delay: number; previous: WindowFigures[]; candidate: WindowFigures[]; obs: Observation | null }

function windowOf(r: () => number, base: number, errRate: number, m: number): WindowFigures {
  return { count: m, errors: Math.min(m, poisson(r, m * errRate)), p95: base * Math.exp(0.15 * normal(r)) };
}

/** One campaign, judged by the fixed limits alone (`sequential` off in gates) or with the sequential test. */
export function simulateCampaign(seed: number, o: SimOptions): SimOutcome {
  const r = rng(seed);
  const seq = o.gates.sequential;
  const k = seq.windowsPerDevice;
  const m = o.inferencesPerWindow;
  const devs: SimDevice[] = Array.from({ length: o.devices }, () => {
    const base = 20 * Math.exp(0.7 * normal(r));
    const errRate = Math.min(0.5, 0.005 * Math.exp(0.5 * normal(r)));
    return { base, errRate, delay: Math.floor(r() * 3), previous: Array.from({ length: k }, () => windowOf(r, base, errRate, m)), candidate: [], obs: null };
  });
  const bounds = waveBoundaries(o.waves.map((w) => ({ ...w, soakSeconds: 0, minReporting: 0, minInferences: 0 })), o.devices);
  const settings = { ...seq, minLatencyDeltaMs: o.gates.minLatencyDeltaMs };
  const observed: Observation[] = [];
  let looks = 0;
  for (let w = 0; w < bounds.length; w++) {
    const inWave = devs.slice(w === 0 ? 0 : bounds[w - 1], bounds[w]);
    const touched = bounds[w];
    for (let look = 1; look <= o.soakLooks; look++) {
      looks++;
      // one more window from every device of the campaign so far that has started
      for (let i = 0; i < touched; i++) {
        const d = devs[i];
        const started = i < (w === 0 ? 0 : bounds[w - 1]) || look > d.delay;
        if (!started) continue;
        const c = windowOf(r, d.base * o.latencyFactor, Math.min(1, d.errRate + o.errorPoints / 100), m);
        d.candidate.push(c);
        if (!d.obs && d.candidate.length >= k + CANDIDATE_WINDOWS_SKIPPED) {
          d.obs = deviceObservation({ deviceId: String(i), wave: w, previous: d.previous, candidate: d.candidate }, k, o.gates.minLatencyDeltaMs);
          if (d.obs) observed.push(d.obs);
        }
      }
      const progress: WaveProgress = { inWaves: touched, pending: 0, inFlight: 0, updated: touched, failed: 0, reverted: 0, settledAt: 0 };
      if (seq.enabled) {
        // decide.ts: a halt at any look; an early advance when the fixed limits pass too (decideEarly)
        const v = verdictFromObservations(observed, settings, w, touched, inWave.length);
        if (v.decision === 'halt') return { halted: true, haltedInWave: w + 1, haltedBy: 'sequential', touched, looks };
        if (v.decision === 'advance' && seq.minSoakSeconds === 0 && judgeGate(progress, fixedFigures(devs.slice(0, touched)), o.gates).passed) break;
        if (look < o.soakLooks) continue;
        if (v.decision === 'wait' && seq.atSoakMax === 'halt') return { halted: true, haltedInWave: w + 1, haltedBy: 'sequential', touched, looks };
      }
      if (look < o.soakLooks) continue;
      // the soak is over: the fixed limits, as judgeGate reads them from the campaign's telemetry
      if (!judgeGate(progress, fixedFigures(devs.slice(0, touched)), o.gates).passed) return { halted: true, haltedInWave: w + 1, haltedBy: 'guardrail', touched, looks };
    }
  }
  return { halted: false, haltedInWave: null, haltedBy: null, touched: o.devices, looks };
}

function median(xs: number[]): number {
  const s = Float64Array.from(xs).sort();
  const h = Math.floor(s.length / 2);
  return s.length % 2 ? s[h] : (s[h - 1] + s[h]) / 2;
}

/** gate-figures.ts's figures: medians of per-window p95 on the candidate and on the previous model, pooled errors. */
function fixedFigures(devs: SimDevice[]): GateFigures {
  const cand = devs.flatMap((d) => d.candidate), prev = devs.flatMap((d) => d.previous);
  const inferences = cand.reduce((a, w) => a + w.count, 0), errors = cand.reduce((a, w) => a + w.errors, 0);
  const p95 = (ws: WindowFigures[]) => median(ws.map((w) => w.p95));
  return {
    reporting: devs.filter((d) => d.candidate.length > 0).length, inferences, errors, drift: [],
    latency: cand.length && prev.length ? { newP95: p95(cand), oldP95: p95(prev), newP99: p95(cand), oldP99: p95(prev) } : null,
  };
}

export function gatesWith(sequential: Partial<SequentialConfig>): GateConfig {
  // p99 is not simulated separately (it equals p95 here): its 2x limit is looser than p95's 1.5x
  return GateConfig.parse({ sequential });
}

export interface ScenarioSummary { runs: number; haltRate: number; haltedInWave1Rate: number; medianTouched: number; medianLooks: number; haltedBySequential: number; haltedByGuardrail: number }

export function runMany(runs: number, seed0: number, o: SimOptions): ScenarioSummary {
  const outs: SimOutcome[] = [];
  for (let i = 0; i < runs; i++) outs.push(simulateCampaign(seed0 + i * 7919, o));
  const halted = outs.filter((x) => x.halted);
  return {
    runs, haltRate: halted.length / runs, haltedInWave1Rate: outs.filter((x) => x.haltedInWave === 1).length / runs,
    medianTouched: median(outs.map((x) => x.touched)), medianLooks: median(outs.map((x) => x.looks)),
    haltedBySequential: halted.filter((x) => x.haltedBy === 'sequential').length, haltedByGuardrail: halted.filter((x) => x.haltedBy === 'guardrail').length,
  };
}

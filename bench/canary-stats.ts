// canaryStats: thousands of seeded simulated campaigns (bench/canary-sim.ts, the real decision code on
// a heterogeneous 1,000-device fleet, default waves 1% (>= 5) / 10% / 50% / 100%), judged in the same run
// by the sequential test beside the fixed limits (today's default gates plus gates.sequential) and by
// the fixed limits alone (sequential off). For a candidate equal to the previous model: the false-halt
// rate (target <= alpha). For 1.2x, 1.5x, 2x and 3x latency and +1 and +5 points of error rate: the
// detection rate, the share halted in wave 1, and the median devices touched.
import { cpus } from 'node:os';
import { fileURLToPath } from 'node:url';
import { DEFAULT_SIM, gatesWith, runMany, type ScenarioSummary } from './canary-sim.ts';

export const CANARY_SCENARIOS: { name: string; latencyFactor: number; errorPoints: number }[] = [
  { name: 'good', latencyFactor: 1, errorPoints: 0 },
  { name: 'latency1.1x', latencyFactor: 1.1, errorPoints: 0 },
  { name: 'latency1.2x', latencyFactor: 1.2, errorPoints: 0 },
  { name: 'latency1.5x', latencyFactor: 1.5, errorPoints: 0 },
  { name: 'latency2x', latencyFactor: 2, errorPoints: 0 },
  { name: 'latency3x', latencyFactor: 3, errorPoints: 0 },
  { name: 'errors+1pt', latencyFactor: 1, errorPoints: 1 },
  { name: 'errors+5pt', latencyFactor: 1, errorPoints: 5 },
];

export async function benchCanaryStats(opts: { goodRuns?: number; regressionRuns?: number; print?: boolean } = {}) {
  const goodRuns = opts.goodRuns ?? 1000, regressionRuns = opts.regressionRuns ?? 200;
  const sequential = gatesWith({});
  const fixed = gatesWith({ enabled: false });
  const rows: Record<string, { sequential: ScenarioSummary; fixed: ScenarioSummary }> = {};
  const t0 = performance.now();
  for (const [i, s] of CANARY_SCENARIOS.entries()) {
    const runs = s.name === 'good' ? goodRuns : regressionRuns;
    const o = { ...DEFAULT_SIM, latencyFactor: s.latencyFactor, errorPoints: s.errorPoints };
    rows[s.name] = { sequential: runMany(runs, 1 + i * 1_000_003, { ...o, gates: sequential }), fixed: runMany(runs, 1 + i * 1_000_003, { ...o, gates: fixed }) };
  }
  // the same good candidate with no tolerance (halt at any slowdown or error increase): where alpha is tight
  const strict = gatesWith({ latencyHaltRatio: 1, errorHaltPoints: 0 });
  const goodStrict = runMany(goodRuns, 99, { ...DEFAULT_SIM, latencyFactor: 1, errorPoints: 0, gates: strict });
  const alpha = sequential.sequential.alpha;
  const falseHaltRate = rows.good.sequential.haltRate;
  const falseHaltRateStrict = goodStrict.haltedBySequential / goodStrict.runs;
  if (opts.print ?? true) {
    const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
    const lines = [`canaryStats: ${DEFAULT_SIM.devices} devices, sequential alpha ${alpha}, margins ${sequential.sequential.latencyMargin}x / +${sequential.sequential.errorMarginPoints} pt`,
      'scenario      runs  | halted seq / fixed | in wave 1 seq / fixed | median touched seq / fixed',
      ...Object.entries(rows).map(([name, r]) => `${name.padEnd(12)} ${String(r.sequential.runs).padStart(5)}  | ${pct(r.sequential.haltRate).padStart(6)} / ${pct(r.fixed.haltRate).padStart(6)}    | ${pct(r.sequential.haltedInWave1Rate).padStart(6)} / ${pct(r.fixed.haltedInWave1Rate).padStart(6)}       | ${String(r.sequential.medianTouched).padStart(5)} / ${r.fixed.medianTouched}`)];
    lines.push(`good, halt at any slowdown (latencyHaltRatio 1, errorHaltPoints 0): ${pct(falseHaltRateStrict)} halted by the sequential test of ${goodStrict.runs}`);
    console.error(lines.join('\n'));
  }
  return {
    devices: DEFAULT_SIM.devices, waves: DEFAULT_SIM.waves, soakLooks: DEFAULT_SIM.soakLooks, inferencesPerWindow: DEFAULT_SIM.inferencesPerWindow,
    sequentialConfig: sequential.sequential,
    scenarios: rows,
    falseHaltRate, falseHaltRateStrict, goodStrict, alpha, targetFalseHaltAtMostAlpha: falseHaltRate <= alpha && falseHaltRateStrict <= alpha,
    simulationSeconds: Math.round(performance.now() - t0) / 1000,
    runs: Object.values(rows).reduce((a, r) => a + r.sequential.runs + r.fixed.runs, 0), cpus: cpus().length,
  };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const [good, reg] = process.argv.slice(2).map(Number);
  console.log(JSON.stringify(await benchCanaryStats({ goodRuns: good || undefined, regressionRuns: reg || undefined }), null, 2));
}

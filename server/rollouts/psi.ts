// Population Stability Index between a baseline histogram and an observed one over the same bins:
// PSI = sum_i (o_i - b_i) * ln(o_i / b_i). Shares are Laplace-smoothed (half a count added to every bin):
// with a fixed epsilon instead, a bin the 200-sample baseline happened to leave empty turns three stray
// observations into a "critical" drift.
export function psi(baseline: readonly number[], observed: readonly number[], alpha = 0.5): number {
  if (baseline.length !== observed.length) throw new Error(`PSI needs the same bins: ${baseline.length} vs ${observed.length}`);
  const k = baseline.length;
  const bTotal = baseline.reduce((a, b) => a + b, 0);
  const oTotal = observed.reduce((a, b) => a + b, 0);
  if (bTotal === 0 || oTotal === 0) return 0;
  let sum = 0;
  for (let i = 0; i < k; i++) {
    const b = (baseline[i] + alpha) / (bTotal + k * alpha);
    const o = (observed[i] + alpha) / (oTotal + k * alpha);
    sum += (o - b) * Math.log(o / b);
  }
  return sum;
}

export type DriftLevel = 'ok' | 'warn' | 'alert' | 'critical';

export function driftLevel(value: number, levels: { warn: number; alert: number; critical: number }): DriftLevel {
  if (value >= levels.critical) return 'critical';
  if (value >= levels.alert) return 'alert';
  if (value >= levels.warn) return 'warn';
  return 'ok';
}

// Population Stability Index between a baseline histogram and an observed one over the same bins:
// PSI = sum_i (o_i - b_i) * ln(o_i / b_i), shares smoothed so an empty bin does not blow up.
export function psi(baseline: readonly number[], observed: readonly number[], epsilon = 1e-4): number {
  if (baseline.length !== observed.length) throw new Error(`PSI needs the same bins: ${baseline.length} vs ${observed.length}`);
  const bTotal = baseline.reduce((a, b) => a + b, 0);
  const oTotal = observed.reduce((a, b) => a + b, 0);
  if (bTotal === 0 || oTotal === 0) return 0;
  let sum = 0;
  for (let i = 0; i < baseline.length; i++) {
    const b = Math.max(baseline[i] / bTotal, epsilon);
    const o = Math.max(observed[i] / oTotal, epsilon);
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

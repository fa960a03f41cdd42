// Shadow figures (issue 17): how a candidate held in shadow compares with the active model on the same
// live inputs. The agent adds each compared sample into sums (ShadowOutputSums, messages.ts) that add up
// across windows and devices; the server turns merged sums into the push gate's measures
// (server/quantize/accuracy-gate.ts): top-1 agreement for classifier outputs, SQNR and cosine for all.
import type { IoSpec, ShadowOutputSums, ShadowTelemetry } from './messages.ts';

type Tensor = { data: ArrayLike<number> | ArrayLike<bigint>; dims: readonly number[] };

/** The push gate's default reading of an output (accuracy-gate.ts defaultKind): a float [N, C] with C >= 2 is a classifier. */
export function outputKind(spec: Pick<IoSpec, 'type' | 'shape'> | undefined): ShadowOutputSums['kind'] {
  if (!spec) return 'fidelity';
  const last = spec.shape[spec.shape.length - 1];
  return spec.type === 'float32' && spec.shape.length === 2 && !(typeof last === 'number' && last < 2) ? 'classifier' : 'fidelity';
}

export function emptySums(kind: ShadowOutputSums['kind']): ShadowOutputSums {
  return { kind, positions: 0, agree: 0, signal: 0, noise: 0, dot: 0, candidateSq: 0, maxAbsError: 0 };
}

/** Index of the largest value along the last axis, for every position (the push gate's top-1, server/quantize/accuracy-gate.ts, uses it too). */
export function top1(x: { data: ArrayLike<unknown>; dims: readonly number[] }): number[] {
  const width = x.dims.length ? x.dims[x.dims.length - 1] : x.data.length;
  const rows = width ? Math.floor(x.data.length / width) : 0;
  const out: number[] = [];
  for (let r = 0; r < rows; r++) {
    let best = 0, bestValue = Number(x.data[r * width]);
    for (let k = 1; k < width; k++) {
      const v = Number(x.data[r * width + k]);
      if (v > bestValue) { best = k; bestValue = v; }
    }
    out.push(best);
  }
  return out;
}

/**
 * Add one sample's output pair into `sums`. False when the two cannot be compared (different element
 * counts, or a non-finite candidate value): the caller counts that as a candidate error.
 */
export function addSample(sums: ShadowOutputSums, active: Tensor, candidate: Tensor): boolean {
  if (active.data.length !== candidate.data.length) return false;
  let signal = 0, noise = 0, dot = 0, cc = 0, maxAbs = 0;
  for (let k = 0; k < active.data.length; k++) {
    const r = Number(active.data[k]), v = Number(candidate.data[k]);
    if (!Number.isFinite(v)) return false;
    const e = r - v;
    signal += r * r; noise += e * e; dot += r * v; cc += v * v;
    if (Math.abs(e) > maxAbs) maxAbs = Math.abs(e);
  }
  if (sums.kind === 'classifier') {
    const a = top1(active), b = top1(candidate);
    for (let k = 0; k < a.length; k++) { sums.positions++; if (a[k] === b[k]) sums.agree++; }
  }
  sums.signal += signal; sums.noise += noise; sums.dot += dot; sums.candidateSq += cc;
  if (maxAbs > sums.maxAbsError) sums.maxAbsError = maxAbs;
  return true;
}

export function mergeSums(into: ShadowOutputSums, add: ShadowOutputSums): void {
  into.positions += add.positions; into.agree += add.agree;
  into.signal += add.signal; into.noise += add.noise; into.dot += add.dot; into.candidateSq += add.candidateSq;
  into.maxAbsError = Math.max(into.maxAbsError, add.maxAbsError);
}

export interface OutputFigures {
  kind: ShadowOutputSums['kind'];
  /** classifier only: top-1 agreement over positions (null for fidelity outputs or none compared) */
  agreement: number | null;
  positions: number;
  /** 10*log10(signal/noise); null when the outputs were identical (no noise) */
  sqnrDb: number | null;
  cosine: number;
  maxAbsError: number;
}

export function outputFigures(s: ShadowOutputSums): OutputFigures {
  const sqnrDb = s.noise === 0 ? null : 10 * Math.log10(Math.max(s.signal, Number.MIN_VALUE) / s.noise);
  const cosine = s.signal === 0 && s.candidateSq === 0 ? 1 : s.signal === 0 || s.candidateSq === 0 ? 0 : s.dot / Math.sqrt(s.signal * s.candidateSq);
  return {
    kind: s.kind, agreement: s.kind === 'classifier' && s.positions > 0 ? s.agree / s.positions : null, positions: s.positions,
    sqnrDb, cosine, maxAbsError: s.maxAbsError,
  };
}

/** Shadow windows (of one candidate) added up: one device's, or a hardware group's. */
export interface ShadowTotals {
  samples: number;
  errors: number;
  dropped: number;
  activeMs: number;
  candidateMs: number;
  outputs: Record<string, ShadowOutputSums>;
}

export function emptyTotals(): ShadowTotals {
  return { samples: 0, errors: 0, dropped: 0, activeMs: 0, candidateMs: 0, outputs: {} };
}

export function addWindow(t: ShadowTotals, w: Pick<ShadowTelemetry, 'samples' | 'errors' | 'dropped' | 'activeMs' | 'candidateMs' | 'outputs'>): void {
  t.samples += w.samples; t.errors += w.errors; t.dropped += w.dropped; t.activeMs += w.activeMs; t.candidateMs += w.candidateMs;
  for (const [name, s] of Object.entries(w.outputs)) {
    const into = t.outputs[name];
    if (!into) t.outputs[name] = { ...s };
    else if (into.kind === s.kind) mergeSums(into, s);
  }
}

export interface ShadowFigures {
  samples: number;
  /** candidate errors / (samples + errors) */
  errorRate: number;
  /** summed candidate latency / summed active latency on the same inputs; null before any sample */
  latencyRatio: number | null;
  /** the lowest top-1 agreement over classifier outputs; null when there is none */
  agreement: number | null;
  /** per output, by name */
  outputs: Record<string, OutputFigures>;
}

export function shadowFigures(t: ShadowTotals): ShadowFigures {
  const outputs: Record<string, OutputFigures> = {};
  let agreement: number | null = null;
  for (const [name, s] of Object.entries(t.outputs)) {
    const f = outputFigures(s);
    outputs[name] = f;
    if (f.agreement !== null) agreement = agreement === null ? f.agreement : Math.min(agreement, f.agreement);
  }
  const runs = t.samples + t.errors;
  return {
    samples: t.samples, errorRate: runs ? t.errors / runs : 0,
    latencyRatio: t.samples && t.activeMs > 0 ? t.candidateMs / t.activeMs : null, agreement, outputs,
  };
}

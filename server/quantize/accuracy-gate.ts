// The release gate between a float model and its quantized candidate: both run in onnxruntime-web (the
// device runtime) on the same samples, and every output is judged by a figure that fits what it is.
//   classifier: top-1 along the last axis (per position for [N, T, C]) must agree with the float model's;
//               with labels, accuracy must not drop overall or for any one class.
//   fidelity:   a probability map, a regression, an embedding, a single probability: the quantized output
//               must stay close to the float one (SQNR and cosine similarity; max abs and relative error
//               are reported too).
// Default thresholds and why (README "Bring your own model"):
//   minAgreement 0.99       1 top-1 flip in 100 is the most a weight-only INT8 model should cost.
//   maxAccuracyDrop 1 point, maxWorstClassDrop 3 points: a class may be noisier than the whole set.
//   minSqnrDb 20            quantization noise power at most 1% of the output's power (error RMS at most
//                           10% of the signal RMS); weight-only INT8 usually lands at 30-40 dB.
//   minCosine 0.99          the output vector within about 8 degrees of the float one: what matters to an
//                           embedding compared by cosine, and a check on the sign pattern of a map.
import { z } from 'zod';
import type { SessionOptions } from '../../runtime/onnx-session.ts';
import { AppError } from '../errors.ts';
import { inspectModel } from '../onnx/inspect-model.ts';
import type { IoSpec } from '../onnx/types.ts';
import { ModelRunError, runOnSamples, type OutputTensor, type SampleOutputs } from '../bundles/run-samples.ts';
import { top1 } from '../../shared/shadow-figures.ts';
import type { RunSample } from '../bundles/samples.ts';
import { QUANTIZED_SESSION_CONFIG } from './quantize.ts';

// the request side of the gate lives in the REST contract (shared/api/bundle-request.ts)
import { GateRequest, GateThresholds, OutputKind } from '../../shared/api/bundle-request.ts';
export { GateRequest, GateThresholds, OutputKind };

export interface OutputGate {
  name: string;
  kind: OutputKind;
  passed: boolean;
  /** classifier: positions compared (samples x positions per sample) and the top-1 agreement over them. */
  positions?: number;
  agreement?: number;
  /** classifier output the labels refer to; null when no labels (or several positions per sample). */
  floatAccuracy?: number | null;
  quantAccuracy?: number | null;
  accuracyDrop?: number | null;
  worstClassDrop?: number | null;
  worstClass?: number | null;
  /** fidelity: 10*log10(sum ref^2 / sum (ref-q)^2); null when the outputs are identical (no noise at all). */
  sqnrDb?: number | null;
  cosine?: number;
  maxAbsError?: number;
  /** max |ref - q| / max |ref| (relative to the output's largest magnitude, not element by element). */
  maxRelError?: number;
  failures: string[];
}

export interface GateResult {
  passed: boolean;
  /** figures of the primary classifier output (the one labels refer to), null when there is none. */
  primaryOutput: string | null;
  agreement: number | null;
  /** null when the samples have no labels. Accuracies are fractions; drops are points. */
  floatAccuracy: number | null;
  quantAccuracy: number | null;
  accuracyDrop: number | null;
  worstClassDrop: number | null;
  worstClass: number | null;
  samples: number;
  thresholds: z.infer<typeof GateThresholds>;
  /** every output's kind, figures and verdict. */
  outputs: OutputGate[];
  /** one line per failed check, naming the output, the figure, its value and the threshold. */
  failures: string[];
}

export interface GateOptions {
  floatSession?: SessionOptions;
  /** defaults to QUANTIZED_SESSION_CONFIG, the config devices use for quantized bundles. */
  quantSession?: SessionOptions;
  /** how to read outputs, by name (default: defaultKind). */
  kinds?: Record<string, OutputKind>;
  /** outputs judged (default: all). */
  outputNames?: string[];
  /** samples per batched run, when the samples can be batched (default 64). */
  batchSize?: number;
}

/** 'classifier' for a float output of rank 2 whose last dim is (or may be) >= 2; 'fidelity' otherwise. */
export function defaultKind(spec: IoSpec): OutputKind {
  const last = spec.shape[spec.shape.length - 1];
  return spec.type === 'float32' && spec.shape.length === 2 && !(typeof last === 'number' && last < 2) ? 'classifier' : 'fidelity';
}

/** The output labels refer to: the first output read as a classifier. */
export function labelOutput(outputs: IoSpec[], kinds: Record<string, OutputKind> = {}): IoSpec | null {
  return outputs.find((o) => (kinds[o.name] ?? defaultKind(o)) === 'classifier') ?? null;
}

/**
 * Gate a candidate on checked samples. A float model that fails to run is the push's problem (422
 * FLEET_ERR_MODEL_RUN_FAILED); a candidate that fails to run fails the gate.
 */
export async function runGate(
  floatBytes: Uint8Array, quantBytes: Uint8Array, samples: RunSample[], io: { inputs: IoSpec[]; outputs: IoSpec[] },
  thresholds: GateThresholds = {}, opts: GateOptions = {},
): Promise<GateResult & { floatOutputs: SampleOutputs[]; quantOutputs: SampleOutputs[] | null }> {
  const t = GateThresholds.parse(thresholds);
  const kinds = opts.kinds ?? {};
  let floatOut: SampleOutputs[];
  try {
    floatOut = await runOnSamples(floatBytes, opts.floatSession ?? {}, samples, io.inputs, opts.batchSize);
  } catch (err) {
    if (err instanceof ModelRunError) throw new AppError('FLEET_ERR_MODEL_RUN_FAILED', `the float model failed on ${err.message}`, 422);
    throw err;
  }
  const empty = {
    primaryOutput: null, agreement: null, floatAccuracy: null, quantAccuracy: null, accuracyDrop: null,
    worstClassDrop: null, worstClass: null, samples: samples.length, thresholds: t,
  };
  let quantOut: SampleOutputs[];
  try {
    quantOut = await runOnSamples(quantBytes, opts.quantSession ?? { config: { ...QUANTIZED_SESSION_CONFIG } }, samples, io.inputs, opts.batchSize);
  } catch (err) {
    if (!(err instanceof ModelRunError)) throw err;
    const failure = `the quantized model failed on ${err.message}`;
    return { ...empty, passed: false, outputs: [], failures: [failure], floatOutputs: floatOut, quantOutputs: null };
  }

  const judged = io.outputs.filter((o) => !opts.outputNames || opts.outputNames.includes(o.name));
  const primary = labelOutput(judged, kinds);
  const labels = samples.every((s) => s.label !== undefined) ? samples.map((s) => s.label!) : undefined;
  const outputs = judged.map((spec) => {
    const kind = kinds[spec.name] ?? defaultKind(spec);
    const f = floatOut.map((o) => o[spec.name]);
    const q = quantOut.map((o) => o[spec.name]);
    const shapeProblem = f.findIndex((x, i) => !x || !q[i] || x.dims.join(',') !== q[i].dims.join(','));
    if (shapeProblem >= 0) {
      const x = f[shapeProblem], y = q[shapeProblem];
      const failure = `${spec.name}: sample ${shapeProblem} gives shape [${x?.dims ?? 'none'}] float, [${y?.dims ?? 'none'}] quantized`;
      return { name: spec.name, kind, passed: false, failures: [failure] } satisfies OutputGate;
    }
    return kind === 'classifier'
      ? judgeClassifier(spec.name, f, q, spec === primary ? labels : undefined, t)
      : judgeFidelity(spec.name, f, q, t);
  });
  const failures = outputs.flatMap((o) => o.failures);
  const p = outputs.find((o) => o.name === primary?.name);
  return {
    ...empty, passed: failures.length === 0, outputs, failures, floatOutputs: floatOut, quantOutputs: quantOut,
    ...(p ? {
      primaryOutput: p.name, agreement: p.agreement ?? null, floatAccuracy: p.floatAccuracy ?? null, quantAccuracy: p.quantAccuracy ?? null,
      accuracyDrop: p.accuracyDrop ?? null, worstClassDrop: p.worstClassDrop ?? null, worstClass: p.worstClass ?? null,
    } : {}),
  };
}

function judgeClassifier(name: string, f: OutputTensor[], q: OutputTensor[], labels: number[] | undefined, t: z.infer<typeof GateThresholds>): OutputGate {
  const failures: string[] = [];
  let positions = 0, agree = 0;
  const floatTop: number[] = [], quantTop: number[] = [];
  let onePerSample = true;
  f.forEach((x, i) => {
    const a = top1(x), b = top1(q[i]);
    if (a.length !== 1) onePerSample = false;
    for (let k = 0; k < a.length; k++) { positions++; if (a[k] === b[k]) agree++; }
    floatTop.push(a[0]); quantTop.push(b[0]);
  });
  const agreement = positions ? agree / positions : 1;
  if (!(agreement >= t.minAgreement)) failures.push(`${name}: agreement ${agreement.toFixed(4)} is below the minimum ${t.minAgreement}`);
  const out: OutputGate = { name, kind: 'classifier', passed: false, positions, agreement, floatAccuracy: null, quantAccuracy: null, accuracyDrop: null, worstClassDrop: null, worstClass: null, failures };
  if (labels && onePerSample) {
    const perClass = new Map<number, { count: number; floatOk: number; quantOk: number }>();
    let floatOk = 0, quantOk = 0;
    labels.forEach((label, i) => {
      const c = perClass.get(label) ?? { count: 0, floatOk: 0, quantOk: 0 };
      c.count++;
      if (floatTop[i] === label) { floatOk++; c.floatOk++; }
      if (quantTop[i] === label) { quantOk++; c.quantOk++; }
      perClass.set(label, c);
    });
    out.floatAccuracy = floatOk / labels.length;
    out.quantAccuracy = quantOk / labels.length;
    out.accuracyDrop = (out.floatAccuracy - out.quantAccuracy) * 100;
    for (const [cls, c] of [...perClass.entries()].sort((a, b) => a[0] - b[0])) {
      const drop = ((c.floatOk - c.quantOk) / c.count) * 100;
      if (out.worstClassDrop === null || drop > out.worstClassDrop!) { out.worstClassDrop = drop; out.worstClass = cls; }
    }
    if (out.accuracyDrop > t.maxAccuracyDrop) {
      failures.push(`${name}: accuracyDrop ${out.accuracyDrop.toFixed(2)} points (float ${pct(out.floatAccuracy)}, quantized ${pct(out.quantAccuracy)}) exceeds the maximum ${t.maxAccuracyDrop} points`);
    }
    if (out.worstClassDrop! > t.maxWorstClassDrop) {
      failures.push(`${name}: worstClassDrop ${out.worstClassDrop!.toFixed(2)} points (class ${out.worstClass}) exceeds the maximum ${t.maxWorstClassDrop} points`);
    }
  }
  out.passed = failures.length === 0;
  return out;
}

function judgeFidelity(name: string, f: OutputTensor[], q: OutputTensor[], t: z.infer<typeof GateThresholds>): OutputGate {
  let signal = 0, noise = 0, dot = 0, qq = 0, maxAbs = 0, maxRef = 0;
  let finite = true;
  f.forEach((x, i) => {
    for (let k = 0; k < x.data.length; k++) {
      const r = Number(x.data[k]), v = Number(q[i].data[k]);
      if (!Number.isFinite(v)) finite = false;
      const e = r - v;
      signal += r * r; noise += e * e; dot += r * v; qq += v * v;
      if (Math.abs(e) > maxAbs) maxAbs = Math.abs(e);
      if (Math.abs(r) > maxRef) maxRef = Math.abs(r);
    }
  });
  const failures: string[] = [];
  if (!finite) failures.push(`${name}: the quantized model gives non-finite values (NaN or infinity)`);
  // identical outputs: no noise, an SQNR of +infinity, reported as null
  const sqnrDb = noise === 0 && finite ? null : 10 * Math.log10(Math.max(signal, Number.MIN_VALUE) / noise);
  const cosine = signal === 0 && qq === 0 ? 1 : signal === 0 || qq === 0 ? 0 : dot / Math.sqrt(signal * qq);
  const maxRelError = maxRef > 0 ? maxAbs / maxRef : maxAbs === 0 ? 0 : Infinity;
  if (sqnrDb !== null && !(sqnrDb >= t.minSqnrDb)) failures.push(`${name}: sqnrDb ${fmt(sqnrDb)} dB is below the minimum ${t.minSqnrDb} dB`);
  if (!(cosine >= t.minCosine)) failures.push(`${name}: cosine ${fmt(cosine, 5)} is below the minimum ${t.minCosine}`);
  return {
    name, kind: 'fidelity', passed: failures.length === 0, sqnrDb: finiteOrNull(sqnrDb), cosine: finiteOrNull(cosine) ?? 0,
    maxAbsError: finiteOrNull(maxAbs) ?? Number.MAX_VALUE, maxRelError: finiteOrNull(maxRelError) ?? Number.MAX_VALUE, failures,
  };
}

function finiteOrNull(x: number | null): number | null {
  return x !== null && Number.isFinite(x) ? x : null;
}

function fmt(x: number, digits = 2): string {
  return Number.isFinite(x) ? x.toFixed(digits) : String(x);
}

function pct(v: number): string {
  return `${(v * 100).toFixed(2)}%`;
}

// ---- the older entry point: one float input, samples back to back (the digits pipeline, bench) ----

export interface GateReference {
  /** samples back to back: shape[0] samples of shape[1..] elements each. */
  inputs: Float32Array;
  shape: number[];
  /** true labels; without them only agreement is gated. */
  labels?: number[];
}

export interface LegacyGateOptions extends GateOptions { inputName?: string; outputName?: string }

export async function runAccuracyGate(
  floatBytes: Uint8Array, quantBytes: Uint8Array, reference: GateReference,
  thresholds: GateThresholds = {}, opts: LegacyGateOptions = {},
): Promise<GateResult & { agreement: number }> {
  const n = reference.shape[0];
  const rest = reference.shape.slice(1);
  const per = rest.reduce((a, b) => a * b, 1);
  if (n <= 0 || reference.inputs.length !== n * per) {
    throw new Error(`reference inputs hold ${reference.inputs.length} values, shape [${reference.shape}] needs ${n * per}`);
  }
  if (reference.labels && reference.labels.length !== n) throw new Error(`reference has ${reference.labels.length} labels for ${n} samples`);
  const info = inspectModel(floatBytes);
  const input = info.inputs.find((i) => i.name === (opts.inputName ?? info.inputs[0].name))!;
  const samples: RunSample[] = Array.from({ length: n }, (_, i) => ({
    inputs: { [input.name]: { dtype: 'float32', dims: [1, ...rest], data: reference.inputs.slice(i * per, (i + 1) * per) } },
    ...(reference.labels ? { label: reference.labels[i] } : {}),
  }));
  const outputNames = [opts.outputName ?? info.outputs[0].name];
  const { floatOutputs: _f, quantOutputs: _q, ...result } = await runGate(floatBytes, quantBytes, samples, { inputs: [input], outputs: info.outputs }, thresholds, {
    ...opts, outputNames, kinds: { [outputNames[0]]: 'classifier', ...opts.kinds },
  });
  return { ...result, agreement: result.agreement ?? 0 };
}

// The release gate between a float model and its quantized candidate: both run in
// onnxruntime-web (the device runtime) on the same reference set, in batches, and the candidate
// must agree with the float model's top-1 and not lose accuracy overall or for any one class.
import { z } from 'zod';
import { createSession, ort, type SessionOptions } from '../../runtime/onnx-session.ts';
import { QUANTIZED_SESSION_CONFIG } from './quantize.ts';

export const GateThresholds = z.object({
  /** minimum fraction of samples where the candidate's top-1 equals the float model's. */
  minAgreement: z.number().min(0).max(1).default(0.99),
  /** maximum overall accuracy loss, in percentage points. */
  maxAccuracyDrop: z.number().min(0).default(1),
  /** maximum accuracy loss on any single class, in percentage points. */
  maxWorstClassDrop: z.number().min(0).default(3),
});
export type GateThresholds = z.input<typeof GateThresholds>;

export interface GateReference {
  /** samples back to back: shape[0] samples of shape[1..] elements each. */
  inputs: Float32Array;
  shape: number[];
  /** true labels; without them only agreement is gated. */
  labels?: number[];
}

export interface GateOptions {
  batchSize?: number;
  inputName?: string;
  outputName?: string;
  floatSession?: SessionOptions;
  /** defaults to QUANTIZED_SESSION_CONFIG, the config devices use for quantized bundles. */
  quantSession?: SessionOptions;
}

export interface GateResult {
  passed: boolean;
  agreement: number;
  /** null when the reference set has no labels. Accuracies are fractions; drops are points. */
  floatAccuracy: number | null;
  quantAccuracy: number | null;
  accuracyDrop: number | null;
  worstClassDrop: number | null;
  worstClass: number | null;
  samples: number;
  thresholds: z.infer<typeof GateThresholds>;
  /** one line per failed check, naming the figure, its value and the threshold. */
  failures: string[];
}

export async function runAccuracyGate(
  floatBytes: Uint8Array, quantBytes: Uint8Array, reference: GateReference,
  thresholds: GateThresholds = {}, opts: GateOptions = {},
): Promise<GateResult> {
  const t = GateThresholds.parse(thresholds);
  const n = reference.shape[0];
  const perSample = reference.shape.slice(1).reduce((a, b) => a * b, 1);
  if (n <= 0 || reference.inputs.length !== n * perSample) {
    throw new Error(`reference inputs hold ${reference.inputs.length} values, shape [${reference.shape}] needs ${n * perSample}`);
  }
  if (reference.labels && reference.labels.length !== n) {
    throw new Error(`reference has ${reference.labels.length} labels for ${n} samples`);
  }

  const floatTop1 = await predictTop1(floatBytes, reference, opts.floatSession ?? {}, opts);
  const quantTop1 = await predictTop1(quantBytes, reference, opts.quantSession ?? { config: { ...QUANTIZED_SESSION_CONFIG } }, opts);

  let agree = 0;
  for (let i = 0; i < n; i++) if (floatTop1[i] === quantTop1[i]) agree++;
  const agreement = agree / n;
  const failures: string[] = [];
  if (agreement < t.minAgreement) {
    failures.push(`agreement ${agreement.toFixed(4)} is below the minimum ${t.minAgreement}`);
  }

  let floatAccuracy: number | null = null, quantAccuracy: number | null = null;
  let accuracyDrop: number | null = null, worstClassDrop: number | null = null, worstClass: number | null = null;
  if (reference.labels) {
    const labels = reference.labels;
    const perClass = new Map<number, { count: number; floatOk: number; quantOk: number }>();
    let floatOk = 0, quantOk = 0;
    for (let i = 0; i < n; i++) {
      const c = perClass.get(labels[i]) ?? { count: 0, floatOk: 0, quantOk: 0 };
      c.count++;
      if (floatTop1[i] === labels[i]) { floatOk++; c.floatOk++; }
      if (quantTop1[i] === labels[i]) { quantOk++; c.quantOk++; }
      perClass.set(labels[i], c);
    }
    floatAccuracy = floatOk / n;
    quantAccuracy = quantOk / n;
    accuracyDrop = (floatAccuracy - quantAccuracy) * 100;
    for (const [cls, c] of [...perClass.entries()].sort((a, b) => a[0] - b[0])) {
      const drop = ((c.floatOk - c.quantOk) / c.count) * 100;
      if (worstClassDrop === null || drop > worstClassDrop) { worstClassDrop = drop; worstClass = cls; }
    }
    if (accuracyDrop > t.maxAccuracyDrop) {
      failures.push(`accuracyDrop ${accuracyDrop.toFixed(2)} points (float ${pct(floatAccuracy)}, quantized ${pct(quantAccuracy)}) exceeds the maximum ${t.maxAccuracyDrop} points`);
    }
    if (worstClassDrop! > t.maxWorstClassDrop) {
      failures.push(`worstClassDrop ${worstClassDrop!.toFixed(2)} points (class ${worstClass}) exceeds the maximum ${t.maxWorstClassDrop} points`);
    }
  }

  return {
    passed: failures.length === 0, agreement, floatAccuracy, quantAccuracy, accuracyDrop,
    worstClassDrop, worstClass, samples: n, thresholds: t, failures,
  };
}

function pct(v: number): string {
  return `${(v * 100).toFixed(2)}%`;
}

/** Top-1 class per sample, running the reference set through one session in batches. */
async function predictTop1(bytes: Uint8Array, ref: GateReference, sessionOpts: SessionOptions, opts: GateOptions): Promise<Int32Array> {
  const session = await createSession(bytes, sessionOpts);
  try {
    const inputName = opts.inputName ?? session.inputNames[0];
    const outputName = opts.outputName ?? session.outputNames[0];
    const n = ref.shape[0];
    const rest = ref.shape.slice(1);
    const perSample = rest.reduce((a, b) => a * b, 1);
    // A model exported with a fixed batch dim can only take batches of exactly that size.
    const fixedBatch = fixedBatchSize(session, inputName);
    const batch = fixedBatch ?? Math.max(1, opts.batchSize ?? 100);
    const top1 = new Int32Array(n);
    for (let start = 0; start < n; start += batch) {
      const count = Math.min(batch, n - start);
      let data = ref.inputs.subarray(start * perSample, (start + count) * perSample);
      if (fixedBatch && count < fixedBatch) {
        const padded = new Float32Array(fixedBatch * perSample);
        padded.set(data);
        data = padded;
      }
      const rows = fixedBatch ?? count;
      const out = await session.run({ [inputName]: new ort.Tensor('float32', data, [rows, ...rest]) });
      const y = out[outputName];
      const scores = y.data as Float32Array;
      const classes = scores.length / rows;
      for (let r = 0; r < count; r++) {
        let best = 0;
        for (let k = 1; k < classes; k++) if (scores[r * classes + k] > scores[r * classes + best]) best = k;
        top1[start + r] = best;
      }
    }
    return top1;
  } finally {
    await session.release();
  }
}

function fixedBatchSize(session: ort.InferenceSession, inputName: string): number | null {
  const meta = (session as unknown as { inputMetadata?: { name: string; shape?: unknown[] }[] }).inputMetadata;
  const dim = meta?.find((m) => m.name === inputName)?.shape?.[0];
  return typeof dim === 'number' && dim > 0 ? dim : null;
}

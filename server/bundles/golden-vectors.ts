// Health-check vectors for a manifest: inputs taken from the push's samples (or made from the model's
// input signature with a seeded generator), outputs computed by running the exact artifact that ships.
import { createSession, runSession, type Feeds } from '../../runtime/onnx-session.ts';
import { decodeTensor, elementCount, encodeTensor, type TypedData } from '../../shared/tensor-codec.ts';
import { ModelRunError, ortMessage } from './run-samples.ts';
import type { IoSpec, TensorDType, TensorJson } from '../../shared/messages.ts';
import { AppError } from '../errors.ts';

export type Vector = { inputs: Record<string, TensorJson>; outputs: Record<string, TensorJson> };

const ORT_TO_DTYPE: Record<string, TensorDType> = { float32: 'float32', int32: 'int32', int64: 'int64', uint8: 'uint8', int8: 'int8', bool: 'bool' };

/** Seeded random numbers for health-check inputs (and the simulator's workloads). */
export { mulberry32 as seededRandom } from '../../shared/prng.ts';
import { mulberry32 as seededRandom } from '../../shared/prng.ts';

function synthInput(spec: IoSpec, rand: () => number): TensorJson {
  const dims = spec.shape.map((d) => (typeof d === 'number' && d > 0 ? d : 1));
  const n = elementCount(dims);
  const dtype = ORT_TO_DTYPE[spec.type];
  if (!dtype) throw new AppError('FLEET_ERR_UNSUPPORTED_INPUT', `cannot make health-check data for input ${spec.name} of type ${spec.type}: send samples`, 422);
  const data: TypedData =
    dtype === 'float32' ? Float32Array.from({ length: n }, () => rand()) :
    dtype === 'int64' ? BigInt64Array.from({ length: n }, () => BigInt(Math.floor(rand() * 4))) :
    dtype === 'int32' ? Int32Array.from({ length: n }, () => Math.floor(rand() * 4)) :
    dtype === 'int8' ? Int8Array.from({ length: n }, () => Math.floor(rand() * 8)) :
    Uint8Array.from({ length: n }, () => Math.floor(rand() * 2));
  return encodeTensor(dtype, dims, data);
}

/**
 * Synthetic health-check inputs from the model's signature (every dynamic dim set to 1), used only when
 * a push brings no samples, with a warning for each input whose non-batch dims had to be guessed: such
 * vectors show that the model runs, not that it runs on anything like its real inputs.
 */
/**
 * Inputs of rank >= 3 (images, spectrograms, sequences of frames) with a dynamic dim beyond the batch: a
 * synthetic [1, 3, 1, 1] image shows nothing about a detector, so such a model must bring samples.
 */
export function spatialDynamicInputs(inputs: IoSpec[]): string[] {
  return inputs.filter((spec) => spec.shape.length >= 3 && spec.shape.slice(1).some((d) => !(typeof d === 'number' && d > 0)))
    .map((spec) => `${spec.name} [${spec.shape.map((d) => (typeof d === 'number' && d > 0 ? d : d ?? '?')).join(', ')}]`);
}

export function synthGoldenInputs(inputs: IoSpec[], count: number, seed = 7): { inputs: Record<string, TensorJson>[]; warnings: string[] } {
  const rand = seededRandom(seed);
  const warnings: string[] = [];
  for (const spec of inputs) {
    const guessed = spec.shape.map((d, k) => (k > 0 && !(typeof d === 'number' && d > 0) ? (typeof d === 'string' ? d : `dim ${k}`) : null)).filter((x) => x !== null);
    if (guessed.length) warnings.push(`input ${spec.name}: dynamic ${guessed.join(', ')} set to 1 in the synthetic health-check inputs`);
  }
  return { inputs: Array.from({ length: count }, () => Object.fromEntries(inputs.map((spec) => [spec.name, synthInput(spec, rand)]))), warnings };
}

export async function computeGoldenVectors(artifact: Uint8Array, sessionConfig: Record<string, string>, goldenInputs: Record<string, TensorJson>[]): Promise<{ vectors: Vector[]; medianMs: number }> {
  let session: Awaited<ReturnType<typeof createSession>>;
  try {
    session = await createSession(artifact, { config: sessionConfig });
  } catch (err) {
    throw new ModelRunError(null, ortMessage(err));
  }
  try {
    const vectors: Vector[] = [];
    const times: number[] = [];
    for (const inputs of goldenInputs) {
      const feeds: Feeds = {};
      for (const [name, t] of Object.entries(inputs)) {
        const d = decodeTensor(t);
        feeds[name] = { data: d.data, dims: d.dims, type: d.dtype };
      }
      let out: Awaited<ReturnType<typeof runSession>>;
      let t0 = 0;
      try {
        await runSession(session, feeds); // warm
        t0 = performance.now();
        out = await runSession(session, feeds);
      } catch (err) {
        throw new ModelRunError(vectors.length, ortMessage(err));
      }
      times.push(performance.now() - t0);
      const outputs: Record<string, TensorJson> = {};
      for (const [name, o] of Object.entries(out)) {
        const dtype = ORT_TO_DTYPE[o.type];
        if (!dtype) throw new AppError('FLEET_ERR_UNSUPPORTED_OUTPUT', `output ${name} has type ${o.type}, which health checks cannot compare`, 422);
        outputs[name] = encodeTensor(dtype, [...o.dims], o.data);
      }
      vectors.push({ inputs, outputs });
    }
    times.sort((a, b) => a - b);
    return { vectors, medianMs: times[Math.floor(times.length / 2)] ?? 0 };
  } finally {
    await session.release();
  }
}

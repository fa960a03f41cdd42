// Delta bundles (docs/agent.md "Delta updates"): bytes on the wire and time for three kinds of model
// update of the digits MLP (784 -> 128 -> 10), each as the full artifact, a generic binary diff
// (rsync-style block matching, deflated) and the ONNX-aware delta, in the same run:
//   headOnly     only the classifier head (fc2.weight, fc2.bias) fine-tuned
//   allWeights   every weight fine-tuned a little (each value moved by ~0.1% of itself)
//   requantized  the same float model quantized to INT8 again: per tensor before, per channel now
// buildMs: the server making the delta (once per pair of artifacts); applyMs: the device rebuilding the
// artifact and checking its SHA-256 (median of 5). Each delta is checked to rebuild the target exactly.
// Target: headOnly's model-aware delta at most 10% of the full artifact.
// Run alone: npx tsx bench/delta.ts
import { performance } from 'node:perf_hooks';
import { createHash } from 'node:crypto';
import { applyDelta } from '../shared/delta.ts';
import { genericDelta, modelAwareDelta } from '../server/bundles/delta-builder.ts';
import { decodeModel, encodeModel, readTensor, tensor } from '../server/onnx/graph-builder.ts';
import { quantizeModel } from '../server/quantize/quantize.ts';
import { buildDigitsModel } from '../server/training/digits.ts';
import { mulberry32 } from '../shared/prng.ts';
import { isMain, median, round } from './util.ts';

interface Way { bytes: number; ratio: number; buildMs: number; applyMs: number }
interface Case { fullBytes: number; generic: Way; modelAware: Way }

/** The model with each float initializer the predicate picks moved by `rel` of itself (seeded noise). */
function fineTuned(onnx: Uint8Array, pick: (name: string) => boolean, rel: number, seed: number): Uint8Array {
  const m = decodeModel(onnx);
  const rand = mulberry32(seed);
  m.graph!.initializer = (m.graph!.initializer ?? []).map((t) => {
    if (!pick(t.name ?? '')) return t;
    const v = readTensor(t) as Float32Array;
    const out = v.map((x) => x + x * rel * (rand() * 2 - 1) + rel * 0.01 * (rand() * 2 - 1));
    return tensor(t.name!, out, (t.dims ?? []).map(Number));
  });
  return encodeModel(m);
}

function measure(a: Uint8Array, b: Uint8Array): Case {
  const expect = { sha256: createHash('sha256').update(b).digest('hex'), length: b.byteLength };
  const way = (make: () => { delta: Uint8Array } | null): Way => {
    const t0 = performance.now();
    const made = make();
    const buildMs = performance.now() - t0;
    if (!made) throw new Error('the model-aware builder did not parse the digits model');
    const times: number[] = [];
    for (let i = 0; i < 5; i++) {
      const t1 = performance.now();
      const rebuilt = applyDelta(a, made.delta, expect);
      times.push(performance.now() - t1);
      if (rebuilt.byteLength !== b.byteLength) throw new Error('rebuilt artifact differs');
    }
    return { bytes: made.delta.byteLength, ratio: round(made.delta.byteLength / b.byteLength), buildMs: round(buildMs), applyMs: round(median(times)) };
  };
  return { fullBytes: b.byteLength, generic: way(() => genericDelta(a, b)), modelAware: way(() => modelAwareDelta(a, b)) };
}

export async function benchDelta(): Promise<object> {
  const digits = await buildDigitsModel();
  // both sides through the same encoder, so only the weights differ
  const base = encodeModel(decodeModel(digits.onnx));
  const headOnly = measure(base, fineTuned(base, (n) => n.startsWith('fc2.'), 0.05, 1));
  const allWeights = measure(base, fineTuned(base, () => true, 0.001, 2));
  const requantized = measure(quantizeModel(base, { perChannel: 'never' }).bytes, quantizeModel(base, { perChannel: 'always' }).bytes);
  return {
    model: 'digits MLP 784-128-10, float32',
    headOnly, allWeights, requantized,
    target: 'headOnly.modelAware.ratio <= 0.1',
    targetMet: headOnly.modelAware.ratio <= 0.1,
  };
}

if (isMain(import.meta.url)) console.log(JSON.stringify(await benchDelta(), null, 2));

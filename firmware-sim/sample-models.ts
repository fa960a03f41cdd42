// Small real ONNX models and reference sets the simulator (and the tests) use: fast to load, different
// weights per seed.
import { seededRandom } from '../server/bundles/golden-vectors.ts';
import { encodeModel, floatTensor, graph, model, node, valueInfo } from '../server/onnx/graph-builder.ts';
import { encodeTensor } from '../shared/tensor-codec.ts';

/** x[N,8] -> MatMul W[8,4] -> Add b -> Softmax -> probs[N,4] */
export function tinyClassifier(seed = 1, opts: { inputs?: number; classes?: number } = {}): Uint8Array {
  const nIn = opts.inputs ?? 8, nOut = opts.classes ?? 4;
  const rand = seededRandom(seed);
  const W = Float32Array.from({ length: nIn * nOut }, () => rand() * 2 - 1);
  const b = Float32Array.from({ length: nOut }, () => rand() * 0.2 - 0.1);
  return encodeModel(model(graph({
    name: `tiny-${seed}`,
    nodes: [node('MatMul', ['x', 'W'], ['h']), node('Add', ['h', 'b'], ['logits']), node('Softmax', ['logits'], ['probs'], { axis: -1 })],
    inputs: [valueInfo('x', 'float32', ['N', nIn])],
    outputs: [valueInfo('probs', 'float32', ['N', nOut])],
    initializers: [floatTensor('W', W, [nIn, nOut]), floatTensor('b', b, [nOut])],
  })));
}

/** A reference set for tinyClassifier: inputs uniform in [0,1), like the simulator's workload. */
export function tinyReference(n = 1000, seed = 11) {
  const rand = seededRandom(seed);
  const data = Float32Array.from({ length: n * 8 }, () => rand());
  return { inputs: { x: encodeTensor('float32', [n, 8], data) } };
}

/**
 * Shadow-mode scenarios (issue 17): tinyClassifier(seed) with a trap. When input element `trapInput`
 * exceeds `threshold`, boost x (x - threshold) is added to class `toClass`'s logit; below it the outputs
 * are bit for bit tinyClassifier(seed)'s (the trap adds an exact 0). Inputs in [0,1) never reach a
 * threshold >= 1, so such a model agrees with the seed model everywhere, golden inputs included.
 */
export function trappedClassifier(seed: number, opts: { threshold: number; toClass?: number; boost?: number; trapInput?: number }): Uint8Array {
  const nIn = 8, nOut = 4;
  const rand = seededRandom(seed); // the same draws, in the same order, as tinyClassifier(seed)
  const W = Float32Array.from({ length: nIn * nOut }, () => rand() * 2 - 1);
  const b = Float32Array.from({ length: nOut }, () => rand() * 0.2 - 0.1);
  const V = Float32Array.from({ length: nIn }, (_, i) => (i === (opts.trapInput ?? 7) ? 1 : 0));
  const U = Float32Array.from({ length: nOut }, (_, i) => (i === (opts.toClass ?? 0) ? opts.boost ?? 1000 : 0));
  return encodeModel(model(graph({
    name: `trapped-${seed}`,
    nodes: [
      node('MatMul', ['x', 'W'], ['h']), node('Add', ['h', 'b'], ['logits0']),
      node('MatMul', ['x', 'V'], ['picked']), node('Sub', ['picked', 't'], ['over']), node('Relu', ['over'], ['excess']),
      node('MatMul', ['excess', 'U'], ['trap']), node('Add', ['logits0', 'trap'], ['logits']),
      node('Softmax', ['logits'], ['probs'], { axis: -1 }),
    ],
    inputs: [valueInfo('x', 'float32', ['N', nIn])],
    outputs: [valueInfo('probs', 'float32', ['N', nOut])],
    initializers: [floatTensor('W', W, [nIn, nOut]), floatTensor('b', b, [nOut]), floatTensor('V', V, [nIn, 1]), floatTensor('t', [opts.threshold], [1]), floatTensor('U', U, [1, nOut])],
  })));
}

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

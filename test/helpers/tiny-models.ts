// Small real ONNX models for tests, built in code: fast to load, different weights per seed.
import { encodeModel, floatTensor, graph, model, node, valueInfo } from '../../server/onnx/graph-builder.ts';
import { seededRandom } from '../../server/bundles/golden-vectors.ts';

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

// A classifier whose cost is set by its depth: x[N,8] -> MatMul -> h[N,W], tiled to [N*R,W], `layers` x
// (MatMul [W,W] -> Tanh), mean over rows, MatMul -> Softmax -> probs[1,4]. Weights stay small
// (layers x W x W floats) while compute grows with layers x R x W x W, so a 3x deeper model costs about
// 3x on any host, and downloads stay cheap.
import { seededRandom } from '../../server/bundles/golden-vectors.ts';
import { encodeModel, floatTensor, graph, int64Tensor, model, node, valueInfo } from '../../server/onnx/graph-builder.ts';

export function costlyClassifier(seed: number, layers: number, opts: { width?: number; repeat?: number } = {}): Uint8Array {
  const W = opts.width ?? 128, R = opts.repeat ?? 128;
  const rand = seededRandom(seed);
  const mat = (name: string, rows: number, cols: number) => floatTensor(name, Float32Array.from({ length: rows * cols }, () => (rand() * 2 - 1) / Math.sqrt(rows)), [rows, cols]);
  const nodes = [node('MatMul', ['x', 'W0'], ['h0']), node('Tile', ['h0', 'reps'], ['t0'])];
  const inits = [mat('W0', 8, W), int64Tensor('reps', [R, 1], [2]), mat('Wout', W, 4), floatTensor('b', Float32Array.from({ length: 4 }, () => rand() * 0.2 - 0.1), [4])];
  for (let k = 0; k < layers; k++) {
    nodes.push(node('MatMul', [`t${k}`, `W${k + 1}`], [`m${k}`]), node('Tanh', [`m${k}`], [`t${k + 1}`]));
    inits.push(mat(`W${k + 1}`, W, W));
  }
  nodes.push(
    node('ReduceMean', [`t${layers}`], ['pooled'], { axes: [0], keepdims: 1 }),
    node('MatMul', ['pooled', 'Wout'], ['logits0']), node('Add', ['logits0', 'b'], ['logits']), node('Softmax', ['logits'], ['probs'], { axis: -1 }),
  );
  return encodeModel(model(graph({
    name: `costly-${seed}-${layers}`, nodes,
    inputs: [valueInfo('x', 'float32', [1, 8])], outputs: [valueInfo('probs', 'float32', [1, 4])], initializers: inits,
  })));
}

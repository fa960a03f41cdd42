// Tiny ONNX models built in code for the model tests: each exercises one thing uploads can
// contain (several inputs/outputs, a dynamic batch dim, If and Loop subgraphs, an LSTM, ...).
import { attr, encodeModel, floatTensor, graph, model, node, tensor, valueInfo } from '../../server/onnx/graph-builder.ts';
import { mulberry32 } from '../../server/training/prng.ts';

export function randomFloats(count: number, seed: number, scale = 1): Float32Array {
  const rand = mulberry32(seed);
  return new Float32Array(count).map(() => (rand() * 2 - 1) * scale);
}

/** Two inputs, two outputs: sum and product of a and b. */
export function multiIoModel(): Uint8Array {
  return encodeModel(model(graph({
    nodes: [node('Add', ['a', 'b'], ['sum']), node('Mul', ['a', 'b'], ['product'])],
    inputs: [valueInfo('a', 'float32', [2, 3]), valueInfo('b', 'float32', [2, 3])],
    outputs: [valueInfo('sum', 'float32', [2, 3]), valueInfo('product', 'float32', [2, 3])],
  })));
}

/** x [batch, 4] -> MatMul W [4, 3] -> Relu -> y [batch, 3]; plus an unnamed dynamic dim on a second output. */
export function dynamicBatchModel(): Uint8Array {
  return encodeModel(model(graph({
    nodes: [node('MatMul', ['x', 'W'], ['xw']), node('Relu', ['xw'], ['y']), node('Identity', ['xw'], ['raw'])],
    inputs: [valueInfo('x', 'float32', ['batch', 4])],
    outputs: [valueInfo('y', 'float32', ['batch', 3]), valueInfo('raw', 'float32', [null, 3])],
    initializers: [floatTensor('W', randomFloats(12, 3), [4, 3])],
  })));
}

/** y = cond ? x + 1 : x - 1, with both branches as subgraphs reading the outer x and 'one'. */
export function ifModel(): Uint8Array {
  const branch = (op: string, out: string) => graph({
    name: `${op}_branch`,
    nodes: [node(op, ['x', 'one'], [out])],
    inputs: [],
    outputs: [valueInfo(out, 'float32', [3])],
  });
  return encodeModel(model(graph({
    nodes: [node('If', ['cond'], ['y'], { then_branch: attr.graph(branch('Add', 'then_y')), else_branch: attr.graph(branch('Sub', 'else_y')) })],
    inputs: [valueInfo('cond', 'bool', []), valueInfo('x', 'float32', [3])],
    outputs: [valueInfo('y', 'float32', [3])],
    initializers: [floatTensor('one', [1], [])],
  })));
}

/** Adds `step` to v, trip_count times (a Loop whose body carries one tensor). */
export function loopModel(): Uint8Array {
  const body = graph({
    name: 'loop_body',
    nodes: [node('Identity', ['cond_in'], ['cond_out']), node('Add', ['v_in', 'step'], ['v_out'])],
    inputs: [valueInfo('iter', 'int64', []), valueInfo('cond_in', 'bool', []), valueInfo('v_in', 'float32', [2])],
    outputs: [valueInfo('cond_out', 'bool', []), valueInfo('v_out', 'float32', [2])],
  });
  return encodeModel(model(graph({
    nodes: [node('Loop', ['trip_count', '', 'v0'], ['v_final'], { body: attr.graph(body) })],
    inputs: [valueInfo('trip_count', 'int64', []), valueInfo('v0', 'float32', [2])],
    outputs: [valueInfo('v_final', 'float32', [2])],
    initializers: [floatTensor('step', [0.5, -1])],
  })));
}

/** A one-layer LSTM: X [seq, batch, 3] -> Y [seq, 1, batch, 2], Y_h [1, batch, 2]. */
export function lstmModel(): Uint8Array {
  const hidden = 2, input = 3;
  return encodeModel(model(graph({
    nodes: [node('LSTM', ['X', 'W', 'R', 'B'], ['Y', 'Y_h'], { hidden_size: hidden })],
    inputs: [valueInfo('X', 'float32', ['seq', 'batch', input])],
    outputs: [valueInfo('Y', 'float32', ['seq', 1, 'batch', hidden]), valueInfo('Y_h', 'float32', [1, 'batch', hidden])],
    initializers: [
      tensor('W', randomFloats(4 * hidden * input, 11, 0.5), [1, 4 * hidden, input]),
      tensor('R', randomFloats(4 * hidden * hidden, 12, 0.5), [1, 4 * hidden, hidden]),
      tensor('B', randomFloats(8 * hidden, 13, 0.1), [1, 8 * hidden]),
    ],
  })));
}

/** A one-Relu model stamped with the given default-domain opset (and IR version). */
export function opsetModel(opset: number, irVersion = 8): Uint8Array {
  return encodeModel(model(graph({
    nodes: [node('Relu', ['x'], ['y'])],
    inputs: [valueInfo('x', 'float32', ['N', 4])],
    outputs: [valueInfo('y', 'float32', ['N', 4])],
  }), { opset, irVersion }));
}

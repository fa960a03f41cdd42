import { describe, it, expect } from 'vitest';
import { quantizeModel, QUANTIZED_SESSION_CONFIG } from '../../server/quantize/quantize.ts';
import { inspectModel } from '../../server/onnx/inspect-model.ts';
import { attr, decodeModel, encodeModel, floatTensor, graph, int64Tensor, model, node, readTensor, tensor, valueInfo } from '../../server/onnx/graph-builder.ts';
import { DataType } from '../../server/onnx/onnx-proto.ts';
import { createSession, runSession, type Feeds } from '../../runtime/onnx-session.ts';
import { randomFloats } from './tiny-models.ts';

/** Weights whose output channels differ in magnitude by up to 100x, so per-channel scales matter. */
function channelScaledWeights(dims: number[], channelAxis: number, seed: number): Float32Array {
  const w = randomFloats(dims.reduce((a, b) => a * b, 1), seed);
  const inner = dims.slice(channelAxis + 1).reduce((a, b) => a * b, 1);
  const channels = dims[channelAxis];
  return w.map((v, i) => v * 10 ** (-2 * ((Math.floor(i / inner) % channels) / (channels - 1))));
}

async function runBoth(floatBytes: Uint8Array, quantBytes: Uint8Array, feeds: Feeds, output: string, config: Record<string, string> = {}): Promise<{ f: Float32Array; q: Float32Array }> {
  const fs = await createSession(floatBytes);
  const qs = await createSession(quantBytes, { config });
  const f = (await runSession(fs, feeds))[output].data as Float32Array;
  const q = (await runSession(qs, feeds))[output].data as Float32Array;
  await fs.release();
  await qs.release();
  return { f, q };
}

/** Max |q - f| relative to each output channel's max |f| (channels on the last axis). */
function worstChannelError(f: Float32Array, q: Float32Array, channels: number): number {
  let worst = 0;
  for (let c = 0; c < channels; c++) {
    let peak = 0, err = 0;
    for (let i = c; i < f.length; i += channels) {
      peak = Math.max(peak, Math.abs(f[i]));
      err = Math.max(err, Math.abs(q[i] - f[i]));
    }
    worst = Math.max(worst, err / peak);
  }
  return worst;
}

const K = 24, N = 16, BATCH = 5;
const xFeed = (): Feeds => ({ x: { data: randomFloats(BATCH * K, 99), dims: [BATCH, K] } });
const io = { inputs: [valueInfo('x', 'float32', ['N', K])], outputs: [valueInfo('y', 'float32', ['N', N])] };

describe('quantizeModel rewrites MatMul, Gemm and Conv weights', () => {
  it('MatMul [K,N]: per-channel along the last axis, int8 initializer -> Cast -> Mul, close outputs, no session config', async () => {
    const floatBytes = encodeModel(model(graph({
      nodes: [node('MatMul', ['x', 'W'], ['y'], {}, { name: 'mm' })], ...io,
      initializers: [tensor('W', channelScaledWeights([K, N], 1, 1), [K, N])],
    })));
    const { bytes, report } = quantizeModel(floatBytes);
    expect(report.quantized).toEqual([expect.objectContaining({ node: 'mm', opType: 'MatMul', weight: 'W', graph: 'main', source: 'initializer', perChannel: true, axis: 1, elements: K * N })]);
    expect(report.sessionConfig).toEqual({});
    const m = decodeModel(bytes);
    const q = m.graph!.initializer!.find((t) => t.data_type === DataType.INT8)!;
    expect(q.dims).toEqual([K, N]);
    // the scale broadcasts over the weight: one per column
    expect(m.graph!.initializer!.find((t) => t.name === 'W_scale')!.dims).toEqual([1, N]);
    expect(m.graph!.node.map((n) => n.op_type)).toEqual(['Cast', 'Mul', 'MatMul']);
    expect(m.graph!.initializer!.some((t) => t.name === 'W')).toBe(false);
    const { f, q: out } = await runBoth(floatBytes, bytes, xFeed(), 'y');
    // Per-channel int8 keeps even the 100x smaller channels within ~1-2% of their own range.
    expect(worstChannelError(f, out, N)).toBeLessThan(0.03);
  });

  it('Gemm with transB=0 ([K,N], axis 1) and transB=1 ([N,K], axis 0) both stay correct', async () => {
    for (const transB of [0, 1]) {
      const dims = transB ? [N, K] : [K, N];
      const axis = transB ? 0 : 1;
      const floatBytes = encodeModel(model(graph({
        nodes: [node('Gemm', ['x', 'W', 'b'], ['y'], { transB }, { name: `gemm${transB}` })], ...io,
        initializers: [tensor('W', channelScaledWeights(dims, axis, 2 + transB), dims), floatTensor('b', randomFloats(N, 5, 0.01))],
      })));
      const { bytes, report } = quantizeModel(floatBytes);
      expect(report.quantized[0]).toMatchObject({ opType: 'Gemm', perChannel: true, axis });
      expect(report.skipped).toEqual([expect.objectContaining({ node: `gemm${transB}`, input: 'b', reason: expect.stringMatching(/bias/) })]);
      const { f, q } = await runBoth(floatBytes, bytes, xFeed(), 'y');
      expect(worstChannelError(f, q, N)).toBeLessThan(0.03);
    }
  });

  it('Conv weights are quantized per output filter (axis 0)', async () => {
    const wDims = [8, 4, 3, 3];
    const floatBytes = encodeModel(model(graph({
      nodes: [node('Conv', ['x', 'W'], ['y'], { pads: [1, 1, 1, 1] }, { name: 'conv' })],
      inputs: [valueInfo('x', 'float32', [1, 4, 6, 6])], outputs: [valueInfo('y', 'float32', [1, 8, 6, 6])],
      initializers: [tensor('W', channelScaledWeights(wDims, 0, 7), wDims)],
    })));
    const { bytes, report } = quantizeModel(floatBytes);
    expect(report.quantized).toEqual([expect.objectContaining({ opType: 'Conv', perChannel: true, axis: 0, elements: 288 })]);
    const feeds: Feeds = { x: { data: randomFloats(4 * 36, 8), dims: [1, 4, 6, 6] } };
    const { f, q } = await runBoth(floatBytes, bytes, feeds, 'y');
    // NCHW: channels are the 8 blocks of 36 values; compare each filter's output to its own range.
    let worst = 0;
    for (let c = 0; c < 8; c++) {
      const fc = f.subarray(c * 36, (c + 1) * 36), qc = q.subarray(c * 36, (c + 1) * 36);
      const peak = Math.max(...Array.from(fc, Math.abs));
      worst = Math.max(worst, Math.max(...Array.from(fc, (v, i) => Math.abs(qc[i] - v))) / peak);
    }
    expect(worst).toBeLessThan(0.03);
  });

  it('uses one per-tensor scale when channels are alike and perChannel would not help', () => {
    const floatBytes = encodeModel(model(graph({
      nodes: [node('MatMul', ['x', 'W'], ['y'])], ...io,
      // every column has the same max |w| = 1, so per-channel scales equal the per-tensor one
      initializers: [tensor('W', randomFloats(K * N, 4).map((v, i) => (i < N ? 1 : v)), [K, N])],
    })));
    const { bytes, report } = quantizeModel(floatBytes);
    expect(report.quantized[0].perChannel).toBe(false);
    const scale = decodeModel(bytes).graph!.initializer!.find((t) => t.name === 'W_scale')!;
    expect(scale.dims ?? []).toEqual([]);
    expect(readTensor(scale)[0]).toBeCloseTo(1 / 127, 6);
  });
});

describe('quantizeModel leaves other weights float and says why', () => {
  it('skips computed, small, graph-output and non-candidate weights; quantizes a shared one once and an outer one read in a branch', async () => {
    const body = graph({
      name: 'then', nodes: [node('MatMul', ['x', 'Wsub'], ['then_y'], {}, { name: 'sub_mm' })], inputs: [],
      outputs: [valueInfo('then_y', 'float32', ['N', N])],
    });
    const elseBody = graph({
      name: 'else', nodes: [node('Identity', ['x_big'], ['else_y'], {}, { name: 'else_id' })], inputs: [],
      outputs: [valueInfo('else_y', 'float32', ['N', N])],
    });
    const floatBytes = encodeModel(model(graph({
      nodes: [
        node('MatMul', ['x', 'Wbig'], ['x_big'], {}, { name: 'big' }),
        node('MatMul', ['x', 'Wdyn'], ['d'], {}, { name: 'dynamic' }),
        node('MatMul', ['x', 'Wshared'], ['s1'], {}, { name: 'shared1' }),
        node('MatMul', ['x', 'Wshared'], ['s2'], {}, { name: 'shared2' }),
        node('MatMul', ['x', 'Wsmall'], ['small_y'], {}, { name: 'small' }),
        node('MatMul', ['x', 'Wout'], ['out_y'], {}, { name: 'exposed' }),
        node('Mul', ['d', 'gain'], ['dg'], {}, { name: 'gain_mul' }),
        node('If', ['cond'], ['branch_y'], { then_branch: attr.graph(body), else_branch: attr.graph(elseBody) }, { name: 'branch' }),
      ],
      inputs: [valueInfo('x', 'float32', ['N', K]), valueInfo('Wdyn', 'float32', [K, N]), valueInfo('cond', 'bool', [])],
      outputs: [...['x_big', 'dg', 's1', 's2', 'small_y', 'branch_y', 'out_y'].map((n) => valueInfo(n, 'float32', n === 'small_y' ? ['N', 2] : ['N', N])), valueInfo('Wout', 'float32', [K, N])],
      initializers: [
        tensor('Wbig', randomFloats(K * N, 1), [K, N]), tensor('Wshared', randomFloats(K * N, 2), [K, N]),
        tensor('Wsmall', randomFloats(K * 2, 3), [K, 2]), tensor('Wsub', randomFloats(K * N, 4), [K, N]),
        tensor('Wout', randomFloats(K * N, 5), [K, N]), floatTensor('gain', [2], []),
      ],
    })));
    const { bytes, report } = quantizeModel(floatBytes);
    expect(report.quantized.map((q) => [q.node, q.weight, q.graph, q.consumers])).toEqual([
      ['big', 'Wbig', 'main', ['big']],
      ['shared1', 'Wshared', 'main', ['shared1', 'shared2']],
      ['sub_mm', 'Wsub', 'main', ['sub_mm']],
    ]);
    const reasons = Object.fromEntries(report.skipped.map((s) => [s.node, s.reason]));
    expect(reasons.dynamic).toMatch(/'Wdyn' is a graph input fed at run time, not a constant/);
    expect(reasons.small).toMatch(/48 elements/);
    expect(reasons.exposed).toMatch(/'Wout' is also a graph output/);
    expect(reasons.gain_mul).toMatch(/Mul is not a quantized op type/);
    expect(report.skipped).toHaveLength(4);
    // Wsub is the main graph's, read only inside the then branch: its int8 copy moves into the branch.
    const then = decodeModel(bytes).graph!.node.find((n) => n.op_type === 'If')!.attribute!.find((a) => a.name === 'then_branch')!.g!;
    expect(then.node.map((n) => n.op_type)).toEqual(['Cast', 'Mul', 'MatMul']);
    expect(then.initializer!.map((t) => t.name)).toEqual(['Wsub_int8', 'Wsub_scale']);
    const floats = 4 * (4 * K * N + K * 2 + 1);
    expect(report).toMatchObject({ floatWeightBytes: floats, quantizedWeightBytes: 4 * 3 * K * N, skippedWeightBytes: floats - 4 * 3 * K * N });
    expect(report.summary).toBe(`quantized 3 of 5 constant MatMul weights, ${(100 * 3 * K * N / (4 * K * N + 2 * K + 1)).toFixed(1)}% of float weight bytes; model is ${(100 * report.sizeRatio).toFixed(1)}% of its float size`);
    const feeds: Feeds = { x: { data: randomFloats(BATCH * K, 9), dims: [BATCH, K] }, Wdyn: { data: randomFloats(K * N, 10), dims: [K, N] }, cond: { data: [1], dims: [], type: 'bool' } };
    const { f, q } = await runBoth(floatBytes, bytes, feeds, 'branch_y');
    expect(worstChannelError(f, q, N)).toBeLessThan(0.03);
  });

  it('returns the input unchanged when nothing qualifies, and the summary says why', () => {
    const floatBytes = encodeModel(model(graph({
      nodes: [node('MatMul', ['x', 'W'], ['y'])], ...io,
      initializers: [tensor('W', randomFloats(K * N, 1), [K, N])],
    })));
    const { bytes, report } = quantizeModel(floatBytes, { minElements: K * N + 1 });
    expect(report.quantized).toEqual([]);
    expect(bytes).toEqual(floatBytes);
    expect(report.sizeRatio).toBe(1);
    expect(report.summary).toBe(`nothing quantized: weight … has ${K * N} elements (< ${K * N + 1}); not worth the int8 copy and its scale`);
  });
});

/** x [BATCH, K] -> MatMul(W) -> y, the weight coming from wherever `place` puts it. */
function oneMatMul(place: 'initializer' | 'graph-input-initializer' | 'constant-node', opset = 13, irVersion = 8): Uint8Array {
  const w = tensor('W', channelScaledWeights([K, N], 1, 21), [K, N]);
  return encodeModel(model(graph({
    nodes: [
      ...(place === 'constant-node' ? [node('Constant', [], ['W'], { value: attr.tensor({ ...w, name: undefined }) }, { name: 'W_const' })] : []),
      node('MatMul', ['x', 'W'], ['y'], {}, { name: 'mm' }),
    ],
    inputs: [...io.inputs, ...(place === 'graph-input-initializer' ? [valueInfo('W', 'float32', [K, N])] : [])],
    outputs: io.outputs,
    initializers: place === 'constant-node' ? [] : [w],
  }), { opset, irVersion }));
}

describe('quantizeModel finds weights wherever exporters put them', () => {
  it.each([
    ['initializer', 13, 8],
    ['graph-input-initializer', 13, 8],
    ['constant-node', 13, 8],
    ['initializer', 9, 3],
    ['constant-node', 9, 8],
  ] as const)('%s at opset %i (IR %i): quantized per channel, outputs close to float', async (place, opset, ir) => {
    const floatBytes = oneMatMul(place, opset, ir);
    const { bytes, report } = quantizeModel(floatBytes);
    expect(report.quantized).toEqual([expect.objectContaining({ node: 'mm', weight: 'W', graph: 'main', source: place, perChannel: true, axis: 1 })]);
    expect(report.skipped).toEqual([]);
    expect(report.removedGraphInputs).toEqual(place === 'graph-input-initializer' ? ['W'] : []);
    const m = decodeModel(bytes);
    expect(m.opset_import).toEqual([{ domain: '', version: opset }]);
    expect(m.graph!.input.map((v) => v.name)).toEqual(['x']);
    // IR 3 lists every initializer as an input (and onnxruntime would not fold those): use Constant nodes there.
    const asConstants = place === 'constant-node' || ir < 4;
    expect(m.graph!.node.map((n) => n.op_type)).toEqual([...(asConstants ? ['Constant', 'Constant'] : []), 'Cast', 'Mul', 'MatMul']);
    expect(m.graph!.initializer ?? []).toHaveLength(asConstants ? 0 : 2);
    expect(bytes.length).toBeLessThan(0.5 * floatBytes.length);
    const { f, q } = await runBoth(floatBytes, bytes, xFeed(), 'y');
    expect(worstChannelError(f, q, N)).toBeLessThan(0.03);
  });

  it('quantizes Constant-node weights inside If branches and a Loop body, and outer-scope initializers they read', async () => {
    const wThen = tensor('Wthen', channelScaledWeights([K, N], 1, 31), [K, N]);
    const thenBody = graph({
      name: 'then', inputs: [], outputs: [valueInfo('then_y', 'float32', ['N', N])],
      nodes: [
        node('Constant', [], ['Wthen'], { value: attr.tensor({ ...wThen, name: undefined }) }, { name: 'then_const' }),
        node('MatMul', ['x', 'Wthen'], ['then_y'], {}, { name: 'then_mm' }),
      ],
    });
    const elseBody = graph({
      name: 'else', inputs: [], outputs: [valueInfo('else_y', 'float32', ['N', N])],
      nodes: [node('Gemm', ['x', 'Wouter'], ['else_y'], { transB: 1 }, { name: 'else_gemm' })],
    });
    const loopBody = graph({
      name: 'body',
      inputs: [valueInfo('i', 'int64', []), valueInfo('c_in', 'bool', []), valueInfo('v_in', 'float32', ['N', K])],
      outputs: [valueInfo('c_out', 'bool', []), valueInfo('v_out', 'float32', ['N', K])],
      nodes: [node('Identity', ['c_in'], ['c_out']), node('MatMul', ['v_in', 'Wloop'], ['v_out'], {}, { name: 'loop_mm' })],
    });
    const floatBytes = encodeModel(model(graph({
      nodes: [
        node('If', ['cond'], ['y'], { then_branch: attr.graph(thenBody), else_branch: attr.graph(elseBody) }, { name: 'branch' }),
        node('Loop', ['trips', '', 'x'], ['v'], { body: attr.graph(loopBody) }, { name: 'loop' }),
      ],
      inputs: [valueInfo('x', 'float32', ['N', K]), valueInfo('cond', 'bool', []), valueInfo('trips', 'int64', [])],
      outputs: [valueInfo('y', 'float32', ['N', N]), valueInfo('v', 'float32', ['N', K])],
      initializers: [tensor('Wouter', channelScaledWeights([N, K], 0, 32), [N, K]), tensor('Wloop', randomFloats(K * K, 33, 0.3), [K, K])],
    }), { opset: 13 }));
    const { bytes, report } = quantizeModel(floatBytes);
    expect(report.quantized.map((q) => [q.node, q.graph, q.source, q.perChannel, q.axis])).toEqual([
      ['then_mm', 'branch.then_branch', 'constant-node', true, 1],
      ['else_gemm', 'main', 'initializer', true, 0],
      ['loop_mm', 'main', 'initializer', false, undefined],
    ]);
    expect(report.skipped).toEqual([]);
    for (const cond of [1, 0]) {
      const feeds: Feeds = { x: { data: randomFloats(BATCH * K, 34), dims: [BATCH, K] }, cond: { data: [cond], dims: [], type: 'bool' }, trips: { data: [2], dims: [], type: 'int64' } };
      const { f, q } = await runBoth(floatBytes, bytes, feeds, 'y');
      expect(worstChannelError(f, q, N)).toBeLessThan(0.03);
      const loop = await runBoth(floatBytes, bytes, feeds, 'v');
      expect(maxRelative(loop.f, loop.q)).toBeLessThan(0.03);
    }
  });

  it('quantizes LSTM W and R along the gate rows and leaves its bias float', async () => {
    const hidden = 16, input = 8;
    const floatBytes = encodeModel(model(graph({
      nodes: [node('LSTM', ['X', 'W', 'R', 'B'], ['Y'], { hidden_size: hidden }, { name: 'lstm' })],
      inputs: [valueInfo('X', 'float32', [4, 1, input])],
      outputs: [valueInfo('Y', 'float32', [4, 1, 1, hidden])],
      initializers: [
        tensor('W', randomFloats(4 * hidden * input, 41, 0.5), [1, 4 * hidden, input]),
        tensor('R', randomFloats(4 * hidden * hidden, 42, 0.5), [1, 4 * hidden, hidden]),
        tensor('B', randomFloats(8 * hidden, 43, 0.1), [1, 8 * hidden]),
      ],
    })));
    const { bytes, report } = quantizeModel(floatBytes);
    expect(report.quantized.map((q) => [q.weight, q.elements])).toEqual([['W', 4 * hidden * input], ['R', 4 * hidden * hidden]]);
    expect(report.skipped).toEqual([expect.objectContaining({ input: 'B', reason: expect.stringMatching(/bias/) })]);
    const { f, q } = await runBoth(floatBytes, bytes, { X: { data: randomFloats(4 * input, 44), dims: [4, 1, input] } }, 'Y');
    expect(maxRelative(f, q)).toBeLessThan(0.03);
  });
});

describe('weights moved into place by Slice/Concat/Unsqueeze (spox LSTMs)', () => {
  it('quantizes their constant sources, each along its least-error axis, and the result stays close', async () => {
    const hidden = 16, input = 8;
    const wSrc = tensor('Wsrc', randomFloats(4 * hidden * input, 61, 0.5), [4 * hidden, input]);
    const i64 = (name: string, v: number[]) => int64Tensor(name, v);
    const floatBytes = encodeModel(model(graph({
      nodes: [
        node('Constant', [], ['Wsrc'], { value: attr.tensor({ ...wSrc, name: undefined }) }, { name: 'w_const' }),
        node('Unsqueeze', ['Wsrc', 'axes0'], ['W'], {}, { name: 'w_unsq' }),
        // gate reorder, as exporters write it: R = [Rsrc[H:], Rsrc[:H]]
        node('Slice', ['Rsrc', 'h', 'end'], ['r_tail'], {}, { name: 'r_tail' }),
        node('Slice', ['Rsrc', 'zero', 'h'], ['r_head'], {}, { name: 'r_head' }),
        node('Concat', ['r_tail', 'r_head'], ['r_cat'], { axis: 0 }, { name: 'r_cat' }),
        node('Unsqueeze', ['r_cat', 'axes0'], ['R'], {}, { name: 'r_unsq' }),
        node('LSTM', ['X', 'W', 'R'], ['Y'], { hidden_size: hidden }, { name: 'lstm' }),
      ],
      inputs: [valueInfo('X', 'float32', [4, 1, input])],
      outputs: [valueInfo('Y', 'float32', [4, 1, 1, hidden])],
      initializers: [
        tensor('Rsrc', randomFloats(4 * hidden * hidden, 62, 0.5), [4 * hidden, hidden]),
        i64('axes0', [0]), i64('h', [hidden]), i64('end', [4 * hidden]), i64('zero', [0]),
      ],
    }), { opset: 13 }));
    const { bytes, report } = quantizeModel(floatBytes);
    expect(report.quantized.map((q) => [q.node, q.weight, q.source, q.consumers])).toEqual([
      ['lstm', 'Wsrc', 'constant-node', ['lstm']],
      ['lstm', 'Rsrc', 'initializer', ['lstm']],
    ]);
    expect(report.skipped).toEqual([]);
    const { f, q } = await runBoth(floatBytes, bytes, { X: { data: randomFloats(4 * input, 63), dims: [4, 1, input] } }, 'Y');
    expect(maxRelative(f, q)).toBeLessThan(0.03);
  });
});

describe('the dequantize-linear representation, for comparison', () => {
  it('needs opset 10 (nothing quantized at 9), is per-tensor below 13, per-axis from 13, and asks for the folding session config', async () => {
    const at9 = quantizeModel(oneMatMul('initializer', 9), { representation: 'dequantize-linear' });
    expect(at9.report.quantized).toEqual([]);
    expect(at9.report.summary).toBe('nothing quantized: DequantizeLinear needs opset 10; the model has opset 9');
    const at11 = quantizeModel(oneMatMul('initializer', 11), { representation: 'dequantize-linear' });
    expect(at11.report.quantized).toEqual([expect.objectContaining({ perChannel: false })]);
    const floatBytes = oneMatMul('initializer', 13);
    const at13 = quantizeModel(floatBytes, { representation: 'dequantize-linear' });
    expect(at13.report.quantized).toEqual([expect.objectContaining({ perChannel: true, axis: 1 })]);
    expect(at13.report.sessionConfig).toEqual({ ...QUANTIZED_SESSION_CONFIG });
    expect(decodeModel(at13.bytes).graph!.node.map((n) => n.op_type)).toEqual(['DequantizeLinear', 'MatMul']);
    const { f, q } = await runBoth(floatBytes, at13.bytes, xFeed(), 'y', at13.report.sessionConfig);
    expect(worstChannelError(f, q, N)).toBeLessThan(0.03);
  });
});

describe('models the old quantizer refused', () => {
  it('carries model-local functions over and says their bodies stay float', async () => {
    const m = decodeModel(oneMatMul('initializer'));
    m.functions = [{
      name: 'Twice', domain: 'local', input: ['a'], output: ['b'], opset_import: [{ domain: '', version: 13 }],
      node: [node('MatMul', ['a', 'a'], ['b'], {}, { name: 'fn_mm' })],
    }];
    const withFunction = encodeModel(m);
    const { bytes, report } = quantizeModel(withFunction);
    expect(report.quantized).toHaveLength(1);
    expect(report.skipped).toEqual([expect.objectContaining({ node: 'fn_mm', graph: 'function local:Twice', reason: expect.stringMatching(/function bodies are not rewritten/) })]);
    expect(decodeModel(bytes).functions).toEqual(decodeModel(withFunction).functions);
    expect(decodeModel(bytes).functions![0].node![0].name).toBe('fn_mm');
  });
});

function maxRelative(f: Float32Array, q: Float32Array): number {
  const peak = Math.max(...Array.from(f, Math.abs));
  return Math.max(...Array.from(f, (v, i) => Math.abs(q[i] - v))) / peak;
}

describe('the int8 model runs at float speed', () => {
  /** Best of `runs` interleaved timings: the minimum is what survives other processes on shared cores. */
  async function bestTimes(floatBytes: Uint8Array, quantBytes: Uint8Array, feeds: Feeds, config: Record<string, string>, runs = 60): Promise<{ f: number; q: number }> {
    const fs = await createSession(floatBytes);
    const qs = await createSession(quantBytes, { config });
    const best = { f: Infinity, q: Infinity };
    for (let i = 0; i < runs; i++) {
      for (const [k, s] of [['f', fs], ['q', qs]] as const) {
        const t = performance.now();
        await runSession(s, feeds);
        best[k] = Math.min(best[k], performance.now() - t);
      }
    }
    await fs.release();
    await qs.release();
    return best;
  }

  it('folds Cast -> Mul at load: a batch-1 MatMul over a 4 MB weight is no slower (unfolded it would be ~3x)', async () => {
    const k = 1024, n = 1024;
    const floatBytes = encodeModel(model(graph({
      nodes: [node('MatMul', ['x', 'W'], ['y'], {}, { name: 'mm' })],
      inputs: [valueInfo('x', 'float32', [1, k])], outputs: [valueInfo('y', 'float32', [1, n])],
      initializers: [tensor('W', randomFloats(k * n, 51), [k, n])],
    })));
    const { bytes, report } = quantizeModel(floatBytes);
    expect(report.quantized).toHaveLength(1);
    const t = await bestTimes(floatBytes, bytes, { x: { data: randomFloats(k, 52), dims: [1, k] } }, report.sessionConfig);
    expect(t.q).toBeLessThan(1.3 * t.f);
  }, 60_000);
});

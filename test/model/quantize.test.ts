import { describe, it, expect } from 'vitest';
import { quantizeModel, QUANTIZED_SESSION_CONFIG } from '../../server/quantize/quantize.ts';
import { inspectModel } from '../../server/onnx/inspect-model.ts';
import { attr, decodeModel, encodeModel, floatTensor, graph, model, node, readTensor, tensor, valueInfo } from '../../server/onnx/graph-builder.ts';
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

async function runBoth(floatBytes: Uint8Array, quantBytes: Uint8Array, feeds: Feeds, output: string): Promise<{ f: Float32Array; q: Float32Array }> {
  const fs = await createSession(floatBytes);
  const qs = await createSession(quantBytes, { config: { ...QUANTIZED_SESSION_CONFIG } });
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
  it('MatMul [K,N]: per-channel along the last axis, int8 initializer, close outputs', async () => {
    const floatBytes = encodeModel(model(graph({
      nodes: [node('MatMul', ['x', 'W'], ['y'], {}, { name: 'mm' })], ...io,
      initializers: [tensor('W', channelScaledWeights([K, N], 1, 1), [K, N])],
    })));
    const { bytes, report } = quantizeModel(floatBytes);
    expect(report.quantized).toEqual([expect.objectContaining({ node: 'mm', opType: 'MatMul', weight: 'W', perChannel: true, axis: 1, elements: K * N })]);
    const m = decodeModel(bytes);
    const q = m.graph!.initializer!.find((t) => t.data_type === DataType.INT8)!;
    expect(q.dims).toEqual([K, N]);
    expect(m.graph!.node.map((n) => n.op_type)).toEqual(['DequantizeLinear', 'MatMul']);
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
  it('skips non-constant, shared, small and non-candidate weights, and subgraph ops', async () => {
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
        node('Mul', ['d', 'gain'], ['dg'], {}, { name: 'gain_mul' }),
        node('If', ['cond'], ['branch_y'], { then_branch: attr.graph(body), else_branch: attr.graph(elseBody) }, { name: 'branch' }),
      ],
      inputs: [valueInfo('x', 'float32', ['N', K]), valueInfo('Wdyn', 'float32', [K, N]), valueInfo('cond', 'bool', [])],
      outputs: ['x_big', 'dg', 's1', 's2', 'small_y', 'branch_y'].map((n) => valueInfo(n, 'float32', n === 'small_y' ? ['N', 2] : ['N', N])),
      initializers: [
        tensor('Wbig', randomFloats(K * N, 1), [K, N]), tensor('Wshared', randomFloats(K * N, 2), [K, N]),
        tensor('Wsmall', randomFloats(K * 2, 3), [K, 2]), tensor('Wsub', randomFloats(K * N, 4), [K, N]),
        floatTensor('gain', [2], []),
      ],
    })));
    const { bytes, report } = quantizeModel(floatBytes);
    expect(report.quantized.map((q) => q.node)).toEqual(['big']);
    const reasons = Object.fromEntries(report.skipped.map((s) => [s.node, s.reason]));
    expect(reasons.dynamic).toMatch(/not a constant initializer/);
    expect(reasons.shared1).toMatch(/shared/);
    expect(reasons.shared2).toMatch(/shared/);
    expect(reasons.small).toMatch(/48 elements/);
    expect(reasons.gain_mul).toMatch(/Mul is not a quantized op type/);
    expect(reasons.sub_mm).toMatch(/inside subgraph 'then_branch' of branch/);
    // Still a valid model that onnxruntime-web loads with the quantized config.
    expect(inspectModel(bytes).opTypes).toContain('DequantizeLinear');
    const s = await createSession(bytes, { config: { ...QUANTIZED_SESSION_CONFIG } });
    await s.release();
  });

  it('returns the input unchanged when nothing qualifies', () => {
    const floatBytes = encodeModel(model(graph({
      nodes: [node('MatMul', ['x', 'W'], ['y'])], ...io,
      initializers: [tensor('W', randomFloats(K * N, 1), [K, N])],
    })));
    const { bytes, report } = quantizeModel(floatBytes, { minElements: K * N + 1 });
    expect(report.quantized).toEqual([]);
    expect(bytes).toEqual(floatBytes);
    expect(report.sizeRatio).toBe(1);
  });
});

import { describe, it, expect } from 'vitest';
import { inspectModel, loadCheck, MAX_IR_VERSION, MAX_OPSET, ModelError } from '../../server/onnx/inspect-model.ts';
import { CORPUS, corpusBytes } from '../corpus/corpus.ts';
import { IoSpec } from '../../server/onnx/types.ts';
import { attr, decodeModel, encodeModel, floatTensor, graph, int64Tensor, model, node, valueInfo } from '../../server/onnx/graph-builder.ts';
import { createSession, runSession } from '../../runtime/onnx-session.ts';
import { mulberry32 } from '../../server/training/prng.ts';
import { dynamicBatchModel, ifModel, loopModel, lstmModel, multiIoModel, opsetModel } from './tiny-models.ts';

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(ModelError);
    return (e as ModelError).code;
  }
  throw new Error('expected a ModelError, nothing was thrown');
}

describe('inspectModel accepts valid models', () => {
  it('reports inputs, outputs and ops of a two-input two-output model', async () => {
    const bytes = multiIoModel();
    const info = inspectModel(bytes);
    expect(info.inputs).toEqual([
      { name: 'a', type: 'float32', shape: [2, 3] },
      { name: 'b', type: 'float32', shape: [2, 3] },
    ]);
    expect(info.outputs.map((o) => o.name)).toEqual(['sum', 'product']);
    expect(info.opTypes).toEqual(['Add', 'Mul']);
    expect(info.nodeCount).toBe(2);
    expect(info.opset).toBe(13);
    expect(info.opsets).toEqual([{ domain: '', version: 13 }]);
    expect(info.hasSubgraphs).toBe(false);
    expect(info.weightBytes).toBe(0);
    for (const io of [...info.inputs, ...info.outputs]) expect(IoSpec.safeParse(io).success).toBe(true);
    expect(await loadCheck(bytes)).toEqual({ inputNames: ['a', 'b'], outputNames: ['sum', 'product'] });
  });

  it('keeps named and unnamed dynamic dims and excludes initializers from inputs', async () => {
    const bytes = dynamicBatchModel();
    const info = inspectModel(bytes);
    expect(info.inputs).toEqual([{ name: 'x', type: 'float32', shape: ['batch', 4] }]);
    expect(info.outputs[1]).toEqual({ name: 'raw', type: 'float32', shape: [null, 3] });
    expect(info.weightBytes).toBe(4 * 3 * 4);
    const session = await createSession(bytes);
    const out = await runSession(session, { x: { data: new Float32Array(3 * 4).fill(1), dims: [3, 4] } });
    expect(out.y.dims).toEqual([3, 3]);
    await session.release();
  });

  it('finds ops inside If branches and the If model runs both ways', async () => {
    const bytes = ifModel();
    const info = inspectModel(bytes);
    expect(info.hasSubgraphs).toBe(true);
    expect(info.opTypes).toEqual(['Add', 'If', 'Sub']);
    expect(info.nodeCount).toBe(3);
    expect(info.inputs.map((i) => [i.name, i.type])).toEqual([['cond', 'bool'], ['x', 'float32']]);
    const session = await createSession(bytes);
    const x = { data: [1, 2, 3], dims: [3] };
    const yes = await runSession(session, { cond: { data: [1], dims: [], type: 'bool' }, x });
    const no = await runSession(session, { cond: { data: [0], dims: [], type: 'bool' }, x });
    expect(Array.from(yes.y.data as Float32Array)).toEqual([2, 3, 4]);
    expect(Array.from(no.y.data as Float32Array)).toEqual([0, 1, 2]);
    await session.release();
  });

  it('finds ops inside a Loop body and the Loop model runs', async () => {
    const bytes = loopModel();
    const info = inspectModel(bytes);
    expect(info.hasSubgraphs).toBe(true);
    expect(info.opTypes).toEqual(['Add', 'Identity', 'Loop']);
    expect(info.inputs[0]).toEqual({ name: 'trip_count', type: 'int64', shape: [] });
    const session = await createSession(bytes);
    const out = await runSession(session, {
      trip_count: { data: [4], dims: [], type: 'int64' },
      v0: { data: [0, 0], dims: [2] },
    });
    expect(Array.from(out.v_final.data as Float32Array)).toEqual([2, -4]);
    await session.release();
  });

  it('accepts an LSTM model and onnxruntime-web loads it', async () => {
    const bytes = lstmModel();
    const info = inspectModel(bytes);
    expect(info.opTypes).toEqual(['LSTM']);
    expect(info.inputs).toEqual([{ name: 'X', type: 'float32', shape: ['seq', 'batch', 3] }]);
    expect(info.weightBytes).toBe((24 + 16 + 16) * 4);
    await loadCheck(bytes);
    const session = await createSession(bytes);
    const out = await runSession(session, { X: { data: new Float32Array(2 * 1 * 3).fill(0.5), dims: [2, 1, 3] } });
    expect(out.Y.dims).toEqual([2, 1, 1, 2]);
    expect(out.Y_h.dims).toEqual([1, 1, 2]);
    await session.release();
  });
});

describe('inspectModel refuses bad uploads', () => {
  it('refuses empty input, text, and random bytes as MODEL_NOT_ONNX', () => {
    expect(codeOf(() => inspectModel(new Uint8Array()))).toBe('MODEL_NOT_ONNX');
    expect(codeOf(() => inspectModel(new TextEncoder().encode('hello, this is not a model')))).toBe('MODEL_NOT_ONNX');
    expect(codeOf(() => inspectModel(new TextEncoder().encode('{"graph": {"node": []}}')))).toBe('MODEL_NOT_ONNX');
    const png = Uint8Array.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13, 0x49, 0x48, 0x44, 0x52]);
    expect(codeOf(() => inspectModel(png))).toBe('MODEL_NOT_ONNX');
  });

  it('never accepts random bytes, even ones that protobuf-decode', () => {
    const rand = mulberry32(42);
    for (let i = 0; i < 300; i++) {
      const bytes = new Uint8Array(1 + Math.floor(rand() * 400)).map(() => Math.floor(rand() * 256));
      expect(() => inspectModel(bytes)).toThrow(ModelError);
    }
  });

  it('refuses a model cut inside its graph as MODEL_TRUNCATED, and any cut as some ModelError', () => {
    const bytes = dynamicBatchModel();
    expect(codeOf(() => inspectModel(bytes.subarray(0, Math.floor(bytes.length / 2))))).toBe('MODEL_TRUNCATED');
    for (let cut = 1; cut < bytes.length; cut++) {
      expect(() => inspectModel(bytes.subarray(0, cut))).toThrow(ModelError);
    }
  });

  it('accepts every opset and IR version onnxruntime-web loads, and refuses the ones it does not, by code', async () => {
    // The edges are onnxruntime-web's: check them against the runtime itself, both sides.
    expect(inspectModel(opsetModel(7)).opset).toBe(7);
    expect(inspectModel(opsetModel(MAX_OPSET)).opset).toBe(MAX_OPSET);
    await loadCheck(opsetModel(7));
    await loadCheck(opsetModel(MAX_OPSET));
    expect(codeOf(() => inspectModel(opsetModel(6)))).toBe('MODEL_OPSET_TOO_OLD');
    expect(() => inspectModel(opsetModel(6))).toThrow(/opset 6; onnxruntime-web supports opset 7 or newer/);
    expect(codeOf(() => inspectModel(opsetModel(MAX_OPSET + 1)))).toBe('MODEL_OPSET_TOO_NEW');
    expect(await loadCheck(opsetModel(MAX_OPSET + 1)).catch((e: ModelError) => e.code)).toBe('MODEL_LOAD_FAILED');
    expect(inspectModel(opsetModel(13, MAX_IR_VERSION)).irVersion).toBe(MAX_IR_VERSION);
    await loadCheck(opsetModel(13, MAX_IR_VERSION));
    expect(codeOf(() => inspectModel(opsetModel(13, MAX_IR_VERSION + 1)))).toBe('MODEL_IR_TOO_NEW');
    expect(() => inspectModel(opsetModel(13, MAX_IR_VERSION + 1))).toThrow(/IR version 14; onnxruntime-web reads IR versions up to 13/);
    expect(await loadCheck(opsetModel(13, MAX_IR_VERSION + 1)).catch((e: ModelError) => e.code)).toBe('MODEL_LOAD_FAILED');
  });

  it('accepts a sparse initializer as a defined name and counts its bytes; onnxruntime-web loads it', async () => {
    const m = model(graph({
      nodes: [node('Add', ['x', 'sp'], ['y'])],
      inputs: [valueInfo('x', 'float32', [4])], outputs: [valueInfo('y', 'float32', [4])],
    }));
    m.graph!.sparse_initializer = [{ values: floatTensor('sp', [1, 2]), indices: int64Tensor('sp_idx', [0, 3]), dims: [4] }];
    const bytes = encodeModel(m);
    expect(inspectModel(bytes).weightBytes).toBe(2 * 4 + 2 * 8);
    const s = await createSession(bytes);
    const out = await runSession(s, { x: { data: [10, 10, 10, 10], dims: [4] } });
    expect(Array.from(out.y.data as Float32Array)).toEqual([11, 10, 10, 12]);
    await s.release();
  });

  it('refuses a Constant node whose tensor lives in an external file', () => {
    const m = model(graph({
      nodes: [node('Constant', [], ['c'], { value: attr.tensor({ dims: [4], data_type: 1, data_location: 1, external_data: [{ key: 'location', value: 'w.bin' }] }) }), node('Add', ['x', 'c'], ['y'])],
      inputs: [valueInfo('x', 'float32', [4])], outputs: [valueInfo('y', 'float32', [4])],
    }));
    expect(codeOf(() => inspectModel(encodeModel(m)))).toBe('MODEL_EXTERNAL_DATA');
  });

  it('accepts an opset-9 PaddleOCR model whose weights are Constant nodes, and counts those bytes', async () => {
    const cls = CORPUS.find((c) => c.id === 'ppocr-cls')!;
    const info = inspectModel(corpusBytes(cls));
    expect(info.opset).toBe(9);
    expect(info.inputs).toEqual([{ name: 'x', type: 'float32', shape: ['p2o.DynamicDimension.0', 3, 'p2o.DynamicDimension.1', 'p2o.DynamicDimension.2'] }]);
    expect(info.opTypes).toContain('Constant');
    // every weight of this model is a Constant node's tensor: most of the file.
    expect(info.weightBytes).toBeGreaterThan(0.9 * corpusBytes(cls).length);
    await loadCheck(corpusBytes(cls));
  });

  it('refuses a model over maxBytes as MODEL_TOO_LARGE', () => {
    const bytes = multiIoModel();
    expect(codeOf(() => inspectModel(bytes, { maxBytes: bytes.length - 1 }))).toBe('MODEL_TOO_LARGE');
    expect(() => inspectModel(bytes, { maxBytes: bytes.length - 1 })).toThrow(new RegExp(`${bytes.length} bytes`));
    expect(inspectModel(bytes, { maxBytes: bytes.length }).nodeCount).toBe(2);
  });

  it('refuses a graph without nodes, inputs or outputs', () => {
    const empty = encodeModel(model(graph({ nodes: [], inputs: [valueInfo('x', 'float32', [1])], outputs: [valueInfo('x', 'float32', [1])] })));
    expect(codeOf(() => inspectModel(empty))).toBe('MODEL_NO_GRAPH');
    const noGraph = encodeModel({ ir_version: 8, opset_import: [{ domain: '', version: 13 }], producer_name: 'x' });
    expect(codeOf(() => inspectModel(noGraph))).toBe('MODEL_NO_GRAPH');
    const noInputs = encodeModel(model(graph({
      nodes: [node('Identity', ['c'], ['y'])], inputs: [], outputs: [valueInfo('y', 'float32', [1])],
      initializers: [floatTensor('c', [1])],
    })));
    expect(codeOf(() => inspectModel(noInputs))).toBe('MODEL_NO_INPUTS');
    const noOutputs = encodeModel(model(graph({ nodes: [node('Relu', ['x'], ['y'])], inputs: [valueInfo('x', 'float32', [1])], outputs: [] })));
    expect(codeOf(() => inspectModel(noOutputs))).toBe('MODEL_NO_OUTPUTS');
  });

  it('refuses nodes reading undefined names and weights stored outside the file', () => {
    const dangling = encodeModel(model(graph({
      nodes: [node('Add', ['x', 'ghost'], ['y'])], inputs: [valueInfo('x', 'float32', [1])], outputs: [valueInfo('y', 'float32', [1])],
    })));
    expect(codeOf(() => inspectModel(dangling))).toBe('MODEL_INVALID_GRAPH');
    expect(() => inspectModel(dangling)).toThrow(/ghost/);

    const m = decodeModel(dynamicBatchModel());
    m.graph!.initializer![0] = { ...m.graph!.initializer![0], raw_data: undefined, data_location: 1, external_data: [{ key: 'location', value: 'w.bin' }] };
    expect(codeOf(() => inspectModel(encodeModel(m)))).toBe('MODEL_EXTERNAL_DATA');
  });

  it('loadCheck reports MODEL_LOAD_FAILED with onnxruntime-web\'s message for a model that inspects fine but cannot load', async () => {
    // Structurally valid, but Add of float32 and int64 fails type inference at session creation.
    const bad = encodeModel(model(graph({
      nodes: [node('Add', ['x', 'k'], ['y'])],
      inputs: [valueInfo('x', 'float32', [2]), valueInfo('k', 'int64', [2])],
      outputs: [valueInfo('y', 'float32', [2])],
    })));
    expect(inspectModel(bad).opTypes).toEqual(['Add']);
    const err = await loadCheck(bad).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ModelError);
    expect((err as ModelError).code).toBe('MODEL_LOAD_FAILED');
    expect((err as ModelError).message).toMatch(/onnxruntime-web could not load the model: .+/);
  });
});

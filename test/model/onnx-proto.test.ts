import { isDeepStrictEqual } from 'node:util';
import { describe, it, expect } from 'vitest';
import { decodeModel, encodeModel, floatTensor, graph, int64Tensor, model, node, valueInfo } from '../../server/onnx/graph-builder.ts';
import type { OnnxModel } from '../../server/onnx/types.ts';
import { createSession, runSession, type Feeds, type Outputs } from '../../runtime/onnx-session.ts';
import { CORPUS, corpusBytes, feedsOf } from '../corpus/corpus.ts';

async function run(bytes: Uint8Array, feeds: Feeds): Promise<Outputs> {
  const s = await createSession(bytes);
  const out = await runSession(s, feeds);
  await s.release();
  return out;
}

describe('the full onnx.proto schema round-trips real models', () => {
  for (const c of CORPUS) {
    it(`${c.id}: decode(encode(m)) equals m, the bytes are identical and onnxruntime-web gives bit-identical outputs`, async () => {
      const bytes = corpusBytes(c);
      const m = decodeModel(bytes);
      const again = encodeModel(m);
      // node's deep equality: vitest's walks multi-megabyte byte arrays one element at a time.
      expect(isDeepStrictEqual(decodeModel(again), m)).toBe(true);
      expect(Buffer.from(again).equals(Buffer.from(bytes))).toBe(true);
      const feeds = feedsOf((await c.samples(1))[0]);
      const [a, b] = [await run(bytes, feeds), await run(again, feeds)];
      for (const name of Object.keys(a)) expect(Buffer.from(b[name].data.buffer).equals(Buffer.from(a[name].data.buffer))).toBe(true);
    }, 120_000);
  }
});

/** A model carrying every kind of field the old hand-written subset of onnx.proto dropped. */
function richModel(): OnnxModel {
  const enc = new TextEncoder();
  const m = model(graph({
    name: 'rich',
    nodes: [
      { ...node('Add', ['x', 'one'], ['y'], {}, { name: 'add' }), doc_string: 'adds one', overload: '', metadata_props: [{ key: 'origin', value: 'test' }] },
      node('Slice', ['x', 'starts', 'ends'], ['s'], {}, { name: 'slice' }),
    ],
    inputs: [valueInfo('x', 'float32', ['N'])],
    outputs: [
      { ...valueInfo('y', 'float32', ['N']), doc_string: 'y = x + 1', metadata_props: [{ key: 'unit', value: 'none' }] },
      valueInfo('s', 'float32', [null]),
    ],
    initializers: [
      floatTensor('one', [1], []),
      int64Tensor('starts', [0]),
      // INT64_MAX and a value beyond 2^53 in the typed field, not raw_data: must not be rounded.
      { name: 'ends', dims: [2], data_type: 7, int64_data: [9223372036854775807n, 9007199254740993n] },
    ],
    valueInfo: [
      { name: 'seq', type: { sequence_type: { elem_type: { tensor_type: { elem_type: 1 } } } } },
      { name: 'map', type: { map_type: { key_type: 7, value_type: { tensor_type: { elem_type: 1 } } } } },
      { name: 'opt', type: { optional_type: { elem_type: { tensor_type: { elem_type: 1 } } } } },
      { name: 'sparse', type: { sparse_tensor_type: { elem_type: 1, shape: { dim: [{ dim_value: 4 }] } } } },
    ],
  }), { metadata: { author: 'edge-fleet' }, docString: 'model doc' });
  m.graph!.sparse_initializer = [{ values: floatTensor('sp', [1, 2]), indices: int64Tensor('sp_idx', [0, 3]), dims: [4] }];
  m.graph!.metadata_props = [{ key: 'graph', value: 'meta' }];
  m.graph!.initializer!.push({ name: 'ext', dims: [4], data_type: 1, data_location: 1, external_data: [{ key: 'location', value: 'w.bin' }, { key: 'offset', value: '0' }] });
  m.functions = [{
    name: 'AddOne', domain: 'custom', input: ['a'], output: ['b'], attribute: ['alpha'],
    attribute_proto: [{ name: 'beta', type: 1, f: 0.5 }],
    node: [{ ...node('Add', ['a', 'a'], ['b']), attribute: [{ name: 'unused', type: 1, ref_attr_name: 'alpha' }] }],
    opset_import: [{ domain: '', version: 13 }], doc_string: 'function doc',
  }];
  m.training_info = [{ algorithm: graph({ name: 'step', nodes: [node('Identity', ['x'], ['x2'])], inputs: [], outputs: [] }), update_binding: [{ key: 'one', value: 'x2' }] }];
  m.graph!.node[0].attribute = [{ name: 'strs', type: 8, strings: [enc.encode('a'), enc.encode('b')] }, { name: 'big', type: 7, ints: [-9223372036854775807n, 5] }];
  return m;
}

describe('fields the old subset dropped survive decode -> encode', () => {
  it('keeps functions, training_info, sparse initializers, metadata, doc strings, map/optional/sequence types, external-data refs and exact int64s', () => {
    const m = decodeModel(encodeModel(richModel()));
    expect(m.doc_string).toBe('model doc');
    expect(m.metadata_props).toEqual([{ key: 'author', value: 'edge-fleet' }]);
    expect(m.functions![0]).toMatchObject({ name: 'AddOne', domain: 'custom', attribute: ['alpha'], doc_string: 'function doc' });
    expect(m.functions![0].attribute_proto![0]).toMatchObject({ name: 'beta', f: 0.5 });
    expect(m.functions![0].node![0].attribute![0].ref_attr_name).toBe('alpha');
    expect(m.training_info![0].algorithm!.name).toBe('step');
    expect(m.training_info![0].update_binding).toEqual([{ key: 'one', value: 'x2' }]);
    const g = m.graph!;
    expect(g.metadata_props).toEqual([{ key: 'graph', value: 'meta' }]);
    expect(g.sparse_initializer![0].dims).toEqual([4]);
    expect(g.sparse_initializer![0].indices!.name).toBe('sp_idx');
    expect(g.node[0]).toMatchObject({ doc_string: 'adds one', metadata_props: [{ key: 'origin', value: 'test' }] });
    expect(g.node[0].attribute![1].ints).toEqual([-9223372036854775807n, 5]);
    expect(g.output[0]).toMatchObject({ doc_string: 'y = x + 1', metadata_props: [{ key: 'unit', value: 'none' }] });
    expect(g.initializer!.find((t) => t.name === 'ends')!.int64_data).toEqual([9223372036854775807n, 9007199254740993n]);
    expect(g.initializer!.find((t) => t.name === 'ext')).toMatchObject({ data_location: 1, external_data: [{ key: 'location', value: 'w.bin' }, { key: 'offset', value: '0' }] });
    const types = Object.fromEntries(g.value_info!.map((v) => [v.name, v.type]));
    expect(types.seq!.sequence_type!.elem_type!.tensor_type!.elem_type).toBe(1);
    expect(types.map!.map_type).toMatchObject({ key_type: 7, value_type: { tensor_type: { elem_type: 1 } } });
    expect(types.opt!.optional_type!.elem_type!.tensor_type!.elem_type).toBe(1);
    expect(types.sparse!.sparse_tensor_type!.shape!.dim).toEqual([{ dim_value: 4 }]);
    expect(decodeModel(encodeModel(m))).toEqual(m);
  });

  it('keeps fields newer than the schema (unknown field numbers) byte for byte', () => {
    const base = encodeModel(richModel());
    // ModelProto field 99, varint 42 (tag = 99 << 3 | 0 = 792 = 0x98 0x06): a field ONNX 1.20 does not define.
    const withUnknown = new Uint8Array([...base, 0x98, 0x06, 42]);
    const m = decodeModel(withUnknown);
    expect(m.$unknown).toHaveLength(1);
    expect(Buffer.from(encodeModel(m)).equals(Buffer.from(withUnknown))).toBe(true);
  });
});

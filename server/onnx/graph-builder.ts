// Small helpers to build ONNX models in code: used by the digits trainer to export its MLP,
// by the quantizer to rewrite graphs, and by tests to make tiny models. Everything is a plain
// object (see types.ts) until encodeModel() serialises it with the full onnx.proto schema (onnx-proto.ts).
import { DataType, AttrType, decodeOnnx, encodeOnnx } from './onnx-proto.ts';
import type {
  OnnxAttribute, OnnxGraph, OnnxModel, OnnxNode, OnnxTensor, OnnxValueInfo, ElemType,
} from './types.ts';

export type TensorArray = Float32Array | Float64Array | Int8Array | Uint8Array | Int32Array | BigInt64Array;

const ELEM_TO_DATATYPE: Record<Exclude<ElemType, 'unknown'>, number> = {
  float32: DataType.FLOAT, uint8: DataType.UINT8, int8: DataType.INT8, uint16: DataType.UINT16,
  int16: DataType.INT16, int32: DataType.INT32, int64: DataType.INT64, string: DataType.STRING,
  bool: DataType.BOOL, float16: DataType.FLOAT16, float64: DataType.DOUBLE, uint32: DataType.UINT32,
  uint64: DataType.UINT64, bfloat16: DataType.BFLOAT16,
};

export function dataTypeOf(elem: Exclude<ElemType, 'unknown'>): number {
  return ELEM_TO_DATATYPE[elem];
}

export function elemTypeOf(dataType: number | undefined): ElemType {
  for (const [name, code] of Object.entries(ELEM_TO_DATATYPE)) if (code === dataType) return name as ElemType;
  return 'unknown';
}

/** Bytes per element of a tensor data type (0 for strings and unknown types). */
export function elemSize(dataType: number | undefined): number {
  switch (dataType) {
    case DataType.UINT8: case DataType.INT8: case DataType.BOOL: return 1;
    case DataType.UINT16: case DataType.INT16: case DataType.FLOAT16: case DataType.BFLOAT16: return 2;
    case DataType.FLOAT: case DataType.INT32: case DataType.UINT32: return 4;
    case DataType.INT64: case DataType.DOUBLE: case DataType.UINT64: return 8;
    default: return 0;
  }
}

function arrayDataType(data: TensorArray): number {
  if (data instanceof Float32Array) return DataType.FLOAT;
  if (data instanceof Float64Array) return DataType.DOUBLE;
  if (data instanceof Int8Array) return DataType.INT8;
  if (data instanceof Uint8Array) return DataType.UINT8;
  if (data instanceof Int32Array) return DataType.INT32;
  return DataType.INT64;
}

/** Copies the typed array into raw_data (little-endian, which is what typed arrays are on every target we run). */
function rawBytes(data: TensorArray): Uint8Array {
  return new Uint8Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength));
}

/** A constant tensor (initializer or attribute value). dims defaults to 1-D. */
export function tensor(name: string, data: TensorArray, dims: number[] = [data.length], dataType?: number): OnnxTensor {
  const count = dims.reduce((a, b) => a * b, 1);
  if (count !== data.length) throw new Error(`tensor ${name}: dims [${dims}] hold ${count} elements, data has ${data.length}`);
  return { name, dims, data_type: dataType ?? arrayDataType(data), raw_data: rawBytes(data) };
}

/** Convenience: a float32 tensor from numbers. */
export function floatTensor(name: string, values: ArrayLike<number>, dims?: number[]): OnnxTensor {
  return tensor(name, Float32Array.from(values), dims);
}

/** Convenience: an int64 tensor from numbers (shapes, axes, trip counts). */
export function int64Tensor(name: string, values: number[], dims?: number[]): OnnxTensor {
  return tensor(name, BigInt64Array.from(values.map(BigInt)), dims);
}

/** Reads a constant tensor's elements whichever field holds them (raw_data or the typed *_data fields). */
export function readTensor(t: OnnxTensor): TensorArray {
  const dt = t.data_type ?? DataType.FLOAT;
  const raw = t.raw_data;
  if (raw && raw.length > 0) {
    // Copy: decoded raw_data is a view into the model buffer and may be unaligned.
    const buf = new Uint8Array(raw).buffer;
    switch (dt) {
      case DataType.FLOAT: return new Float32Array(buf);
      case DataType.DOUBLE: return new Float64Array(buf);
      case DataType.INT8: return new Int8Array(buf);
      case DataType.UINT8: case DataType.BOOL: return new Uint8Array(buf);
      case DataType.INT32: return new Int32Array(buf);
      case DataType.INT64: return new BigInt64Array(buf);
      default: throw new Error(`readTensor ${t.name}: unsupported data_type ${dt}`);
    }
  }
  switch (dt) {
    case DataType.FLOAT: return Float32Array.from(t.float_data ?? []);
    case DataType.DOUBLE: return Float64Array.from(t.double_data ?? []);
    case DataType.INT8: return Int8Array.from(t.int32_data ?? []);
    case DataType.UINT8: case DataType.BOOL: return Uint8Array.from(t.int32_data ?? []);
    case DataType.INT32: return Int32Array.from(t.int32_data ?? []);
    case DataType.INT64: return BigInt64Array.from((t.int64_data ?? []).map((v) => BigInt(v)));
    default: throw new Error(`readTensor ${t.name}: unsupported data_type ${dt}`);
  }
}

/** Number of elements of a tensor from its dims (a scalar has 1). */
export function tensorElements(t: OnnxTensor): number {
  return (t.dims ?? []).reduce((a, b) => a * Number(b), 1);
}

export type Dim = number | string | null;

/** A graph input/output/value_info. A string dim is a named dynamic dim, null an unnamed dynamic dim. */
export function valueInfo(name: string, elem: Exclude<ElemType, 'unknown'>, dims: Dim[] | null): OnnxValueInfo {
  const tensorType: NonNullable<OnnxValueInfo['type']>['tensor_type'] = { elem_type: dataTypeOf(elem) };
  if (dims) {
    tensorType.shape = {
      dim: dims.map((d) => (typeof d === 'number' ? { dim_value: d } : typeof d === 'string' ? { dim_param: d } : {})),
    };
  }
  return { name, type: { tensor_type: tensorType } };
}

/** Typed attribute values, for when the shorthand inference in node() would guess wrong (alpha: 1.0 is a float). */
export const attr = {
  float: (v: number): AttrValue => ({ kind: 'float', v }),
  int: (v: number): AttrValue => ({ kind: 'int', v }),
  floats: (v: number[]): AttrValue => ({ kind: 'floats', v }),
  ints: (v: number[]): AttrValue => ({ kind: 'ints', v }),
  string: (v: string): AttrValue => ({ kind: 'string', v }),
  strings: (v: string[]): AttrValue => ({ kind: 'strings', v }),
  tensor: (v: OnnxTensor): AttrValue => ({ kind: 'tensor', v }),
  graph: (v: OnnxGraph): AttrValue => ({ kind: 'graph', v }),
};

export type AttrValue =
  | { kind: 'float'; v: number } | { kind: 'int'; v: number } | { kind: 'floats'; v: number[] }
  | { kind: 'ints'; v: number[] } | { kind: 'string'; v: string } | { kind: 'strings'; v: string[] }
  | { kind: 'tensor'; v: OnnxTensor } | { kind: 'graph'; v: OnnxGraph };

/** Shorthand: integer number -> INT, other number -> FLOAT, string -> STRING, number[] -> INTS (FLOATS if any is fractional). */
export type AttrInput = AttrValue | number | string | number[];

function toAttribute(name: string, value: AttrInput): OnnxAttribute {
  const enc = new TextEncoder();
  let a: AttrValue;
  if (typeof value === 'number') a = Number.isInteger(value) ? attr.int(value) : attr.float(value);
  else if (typeof value === 'string') a = attr.string(value);
  else if (Array.isArray(value)) a = value.every(Number.isInteger) ? attr.ints(value) : attr.floats(value);
  else a = value;
  switch (a.kind) {
    case 'float': return { name, type: AttrType.FLOAT, f: a.v };
    case 'int': return { name, type: AttrType.INT, i: a.v };
    case 'floats': return { name, type: AttrType.FLOATS, floats: a.v };
    case 'ints': return { name, type: AttrType.INTS, ints: a.v };
    case 'string': return { name, type: AttrType.STRING, s: enc.encode(a.v) };
    case 'strings': return { name, type: AttrType.STRINGS, strings: a.v.map((s) => enc.encode(s)) };
    case 'tensor': return { name, type: AttrType.TENSOR, t: a.v };
    case 'graph': return { name, type: AttrType.GRAPH, g: a.v };
  }
}

/** A node. Use '' in inputs for an omitted optional input (ONNX convention). */
export function node(
  opType: string, inputs: string[], outputs: string[],
  attrs: Record<string, AttrInput> = {}, opts: { name?: string; domain?: string } = {},
): OnnxNode {
  const n: OnnxNode = {
    op_type: opType, input: inputs, output: outputs,
    name: opts.name ?? `${opType}_${outputs[0] ?? 'out'}`,
    attribute: Object.entries(attrs).map(([k, v]) => toAttribute(k, v)),
  };
  if (opts.domain) n.domain = opts.domain;
  return n;
}

export function graph(g: {
  name?: string; nodes: OnnxNode[]; inputs: OnnxValueInfo[]; outputs: OnnxValueInfo[];
  initializers?: OnnxTensor[]; valueInfo?: OnnxValueInfo[];
}): OnnxGraph {
  return {
    name: g.name ?? 'graph', node: g.nodes, input: g.inputs, output: g.outputs,
    initializer: g.initializers ?? [], value_info: g.valueInfo ?? [],
  };
}

export interface ModelOptions {
  /** default-domain opset; 13 is the first with per-axis DequantizeLinear and Softmax over the last axis. */
  opset?: number;
  /** IR version 8 is what opset 13-16 exporters write and every onnxruntime since 1.10 reads. */
  irVersion?: number;
  producer?: string;
  producerVersion?: string;
  extraOpsets?: { domain: string; version: number }[];
  metadata?: Record<string, string>;
  docString?: string;
}

export function model(g: OnnxGraph, opts: ModelOptions = {}): OnnxModel {
  const m: OnnxModel = {
    ir_version: opts.irVersion ?? 8,
    opset_import: [{ domain: '', version: opts.opset ?? 13 }, ...(opts.extraOpsets ?? [])],
    producer_name: opts.producer ?? 'edge-fleet',
    producer_version: opts.producerVersion ?? '0.1.0',
    graph: g,
  };
  if (opts.metadata) m.metadata_props = Object.entries(opts.metadata).map(([key, value]) => ({ key, value }));
  if (opts.docString) m.doc_string = opts.docString;
  return m;
}

export function encodeModel(m: OnnxModel): Uint8Array {
  return encodeOnnx(m);
}

/** Decodes without validation (inspectModel is the validating path). int64 fields are numbers, or bigint beyond 2^53. */
export function decodeModel(bytes: Uint8Array): OnnxModel {
  return decodeOnnx(bytes);
}

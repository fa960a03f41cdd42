// Where each tensor's data lies in a serialized ONNX model: byte ranges into the file itself, found by
// walking the protobuf wire format (not by decoding and re-encoding, which need not give the same bytes).
// The delta builder (server/bundles/delta-builder.ts) uses the ranges to match tensors of two versions.
// Walks graph initializers, tensors held in node attributes (Constant nodes: tf2onnx, spox) and
// subgraphs (If/Loop bodies). Throws on anything that is not well-formed protobuf.

export interface TensorRange {
  /** the tensor's name, or `#<n>` (walk order) for an unnamed attribute tensor */
  key: string;
  dataType: number;
  /** the data payload: raw_data, or the packed typed field (float_data, int32_data, ...) */
  start: number;
  end: number;
}

interface Field { no: number; wire: number; start: number; end: number; value: number }

function* fields(buf: Uint8Array, start: number, end: number): Generator<Field> {
  let i = start;
  const varint = (): number => {
    let n = 0, mul = 1;
    for (;;) {
      if (i >= end || mul > 2 ** 63) throw new Error('truncated varint');
      const b = buf[i++];
      n += (b & 0x7f) * mul;
      if (b < 0x80) return n;
      mul *= 0x80;
    }
  };
  while (i < end) {
    const key = varint();
    const no = Math.floor(key / 8), wire = key % 8;
    if (wire === 0) { const v = varint(); yield { no, wire, start: i, end: i, value: v }; }
    else if (wire === 1) { i += 8; yield { no, wire, start: i - 8, end: i, value: 0 }; }
    else if (wire === 5) { i += 4; yield { no, wire, start: i - 4, end: i, value: 0 }; }
    else if (wire === 2) {
      const len = varint();
      if (i + len > end) throw new Error('length-delimited field runs past its message');
      yield { no, wire, start: i, end: i + len, value: len };
      i += len;
    } else throw new Error(`unsupported wire type ${wire}`);
    if (i > end) throw new Error('field runs past its message');
  }
}

// field numbers from onnx.proto
const MODEL_GRAPH = 7;
const GRAPH_NODE = 1, GRAPH_INITIALIZER = 5;
const NODE_ATTRIBUTE = 5;
const ATTR_T = 5, ATTR_G = 6, ATTR_TENSORS = 10, ATTR_GRAPHS = 11;
const TENSOR_DATA_TYPE = 2, TENSOR_NAME = 8, TENSOR_RAW = 9;
/** float_data, int32_data, int64_data, double_data, uint64_data (packed) */
const TENSOR_TYPED = new Set([4, 5, 7, 10, 11]);

export function tensorRanges(model: Uint8Array): TensorRange[] {
  const out: TensorRange[] = [];
  const tensor = (s: number, e: number) => {
    let name = '', dataType = 0, data: Field | null = null;
    for (const f of fields(model, s, e)) {
      if (f.no === TENSOR_NAME && f.wire === 2) name = Buffer.from(model.buffer, model.byteOffset + f.start, f.end - f.start).toString('utf8');
      else if (f.no === TENSOR_DATA_TYPE && f.wire === 0) dataType = f.value;
      else if (f.wire === 2 && (f.no === TENSOR_RAW || TENSOR_TYPED.has(f.no)) && !data) data = f;
    }
    if (data && data.end > data.start) out.push({ key: name || `#${out.length}`, dataType, start: data.start, end: data.end });
  };
  const graph = (s: number, e: number): void => {
    for (const f of fields(model, s, e)) {
      if (f.wire !== 2) continue;
      if (f.no === GRAPH_INITIALIZER) tensor(f.start, f.end);
      else if (f.no === GRAPH_NODE) {
        for (const a of fields(model, f.start, f.end)) {
          if (a.no !== NODE_ATTRIBUTE || a.wire !== 2) continue;
          for (const x of fields(model, a.start, a.end)) {
            if (x.wire !== 2) continue;
            if (x.no === ATTR_T || x.no === ATTR_TENSORS) tensor(x.start, x.end);
            else if (x.no === ATTR_G || x.no === ATTR_GRAPHS) graph(x.start, x.end);
          }
        }
      }
    }
  };
  let sawGraph = false;
  for (const f of fields(model, 0, model.byteLength)) {
    if (f.no === MODEL_GRAPH && f.wire === 2) { graph(f.start, f.end); sawGraph = true; }
  }
  if (!sawGraph) throw new Error('no graph in the model');
  return out.sort((a, b) => a.start - b.start);
}

// Validates an uploaded model without running it, and describes it (ModelInfo) for the registry.
// Protobuf is forgiving: random bytes often decode "successfully" into a message full of unknown
// fields, so acceptance means a sane ir_version, a graph whose nodes only read names that exist,
// declared inputs and outputs, and a default-domain opset and IR version onnxruntime-web reads. loadCheck() is the separate,
// slower proof that onnxruntime-web can actually build a session from it.
import { decodeOnnx } from './onnx-proto.ts';
import { elemSize, elemTypeOf } from './graph-builder.ts';
import type { IoSpec, ModelInfo, OnnxGraph, OnnxModel, OnnxTensor, OnnxValueInfo, OpsetSpec } from './types.ts';
import { createSession, type SessionOptions } from '../../runtime/onnx-session.ts';

export type ModelErrorCode =
  | 'MODEL_NOT_ONNX' | 'MODEL_TRUNCATED' | 'MODEL_TOO_LARGE' | 'MODEL_OPSET_TOO_OLD' | 'MODEL_OPSET_TOO_NEW'
  | 'MODEL_IR_TOO_NEW' | 'MODEL_NO_OPSET'
  | 'MODEL_NO_GRAPH' | 'MODEL_NO_INPUTS' | 'MODEL_NO_OUTPUTS' | 'MODEL_INVALID_GRAPH'
  | 'MODEL_EXTERNAL_DATA' | 'MODEL_LOAD_FAILED';

export class ModelError extends Error {
  readonly code: ModelErrorCode;
  constructor(code: ModelErrorCode, message: string) {
    super(message);
    this.name = 'ModelError';
    this.code = code;
  }
}

// The limits are onnxruntime-web's own (1.30, measured by loading a one-Relu model stamped with each
// version; test/model/inspect-model.test.ts re-checks the edges against the real runtime):
/** ORT "only guarantees support for models stamped with opset version 7 or above" for ai.onnx; 1-6 load only by luck. */
export const MIN_OPSET = 7;
/** Newest ai.onnx opset onnxruntime-web 1.30 loads (27 fails in model_load_utils). */
export const MAX_OPSET = 26;
/** Newest IR version onnxruntime-web 1.30 loads (14 fails in Model::Model). */
export const MAX_IR_VERSION = 13;
/** IR 1 is the first ever; a value far beyond any release is not a model but bytes that happen to decode. */
export const MIN_IR_VERSION = 1;
const PLAUSIBLE_IR_VERSION = 64;

export interface InspectOptions { maxBytes?: number }

export function inspectModel(bytes: Uint8Array, opts: InspectOptions = {}): ModelInfo {
  if (bytes.length === 0) throw new ModelError('MODEL_NOT_ONNX', 'model is empty (0 bytes)');
  if (opts.maxBytes !== undefined && bytes.length > opts.maxBytes) {
    throw new ModelError('MODEL_TOO_LARGE', `model is ${bytes.length} bytes, over the ${opts.maxBytes} byte limit`);
  }
  const m = decodeStrict(bytes);

  const ir = m.ir_version;
  if (typeof ir !== 'number' || !Number.isInteger(ir) || ir < MIN_IR_VERSION || ir > PLAUSIBLE_IR_VERSION) {
    throw new ModelError('MODEL_NOT_ONNX',
      `not an ONNX model: ir_version ${ir ?? 'missing'} is outside ${MIN_IR_VERSION}..${PLAUSIBLE_IR_VERSION}`);
  }
  if (ir > MAX_IR_VERSION) {
    throw new ModelError('MODEL_IR_TOO_NEW', `model has IR version ${ir}; onnxruntime-web reads IR versions up to ${MAX_IR_VERSION}`);
  }
  const g = m.graph;
  if (!g) throw new ModelError('MODEL_NO_GRAPH', 'model has no graph');
  if (g.node.length === 0) throw new ModelError('MODEL_NO_GRAPH', 'model graph has no nodes');

  const opsets: OpsetSpec[] = (m.opset_import ?? []).map((o) => ({ domain: o.domain ?? '', version: Number(o.version ?? 0) }));
  const main = opsets.find((o) => o.domain === '' || o.domain === 'ai.onnx');
  if (!main) throw new ModelError('MODEL_NO_OPSET', 'model declares no opset for the default ONNX domain (truncated file?)');
  if (main.version < MIN_OPSET) {
    throw new ModelError('MODEL_OPSET_TOO_OLD',
      `model uses opset ${main.version}; onnxruntime-web supports opset ${MIN_OPSET} or newer (older opsets load only by luck)`);
  }
  if (main.version > MAX_OPSET) {
    throw new ModelError('MODEL_OPSET_TOO_NEW', `model uses opset ${main.version}; onnxruntime-web loads opsets up to ${MAX_OPSET}`);
  }

  const initNames = new Set((g.initializer ?? []).map((t) => t.name ?? ''));
  const inputs = g.input.filter((v) => !initNames.has(v.name)).map(ioSpec);
  const outputs = g.output.map(ioSpec);
  if (inputs.length === 0) throw new ModelError('MODEL_NO_INPUTS', 'model graph declares no inputs');
  if (outputs.length === 0) throw new ModelError('MODEL_NO_OUTPUTS', 'model graph declares no outputs');

  const walk = { ops: new Set<string>(), nodes: 0, weightBytes: 0, subgraphs: false };
  walkGraph(g, new Set(), walk, 'main graph');

  return {
    irVersion: ir,
    opset: main.version,
    opsets,
    producer: [m.producer_name, m.producer_version].filter(Boolean).join(' '),
    inputs,
    outputs,
    opTypes: [...walk.ops].sort(),
    nodeCount: walk.nodes,
    weightBytes: walk.weightBytes,
    hasSubgraphs: walk.subgraphs,
  };
}

/** Proves onnxruntime-web (WASM, as on devices) can build a session from the model, then frees it. */
export async function loadCheck(bytes: Uint8Array, opts: SessionOptions = {}): Promise<{ inputNames: string[]; outputNames: string[] }> {
  let session;
  try {
    session = await createSession(bytes, opts);
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    throw new ModelError('MODEL_LOAD_FAILED', `onnxruntime-web could not load the model: ${msg}`);
  }
  const names = { inputNames: [...session.inputNames], outputNames: [...session.outputNames] };
  await session.release();
  return names;
}

function decodeStrict(bytes: Uint8Array): OnnxModel {
  try {
    return decodeOnnx(bytes);
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    // A length-delimited field running past the end, in a file that starts the way ONNX
    // exporters start (field 1 = ir_version), is a cut-off upload; anything else is garbage.
    if (/premature EOF|index out of range/i.test(msg) && startsLikeOnnx(bytes)) {
      throw new ModelError('MODEL_TRUNCATED', `model is truncated: ${bytes.length} bytes end inside a field (${msg})`);
    }
    throw new ModelError('MODEL_NOT_ONNX', `not an ONNX model: protobuf decoding failed (${msg})`);
  }
}

function startsLikeOnnx(bytes: Uint8Array): boolean {
  // tag 0x08 = field 1 (ir_version), varint; the value fits one byte for every real IR version.
  return bytes.length >= 2 && bytes[0] === 0x08 && bytes[1] >= MIN_IR_VERSION && bytes[1] <= PLAUSIBLE_IR_VERSION;
}

function ioSpec(v: OnnxValueInfo): IoSpec {
  const tt = v.type?.tensor_type;
  if (!tt) return { name: v.name, type: 'unknown', shape: [] };
  const shape = (tt.shape?.dim ?? []).map((d) =>
    d.dim_value !== undefined ? Number(d.dim_value) : d.dim_param ? d.dim_param : null);
  return { name: v.name, type: elemTypeOf(tt.elem_type), shape };
}

function tensorBytes(t: OnnxTensor): number {
  const size = elemSize(t.data_type);
  if (size > 0) return (t.dims ?? []).reduce((a, b) => a * Number(b), 1) * size;
  if (t.string_data?.length) return t.string_data.reduce((a, s) => a + s.length, 0);
  return t.raw_data?.length ?? 0;
}

/**
 * Collects op types, node count and constant-tensor bytes (initializers, sparse initializers and
 * Constant nodes, where tf2onnx/spox/paddle2onnx keep weights) across the graph and its subgraphs, and
 * checks that every node reads only names defined before it (graph inputs, initializers, earlier
 * node outputs, or an enclosing graph's names for subgraphs), which random protobuf never satisfies.
 */
function walkGraph(
  g: OnnxGraph, outer: Set<string>,
  acc: { ops: Set<string>; nodes: number; weightBytes: number; subgraphs: boolean }, where: string,
): void {
  const known = new Set(outer);
  for (const v of g.input) known.add(v.name);
  const constant = (t: OnnxTensor | undefined, what: string) => {
    if (!t) return;
    if (t.data_location === 1 || (t.external_data?.length ?? 0) > 0) {
      throw new ModelError('MODEL_EXTERNAL_DATA', `${what} in ${where} stores its data in an external file; upload a single self-contained model`);
    }
    acc.weightBytes += tensorBytes(t);
  };
  for (const t of g.initializer ?? []) {
    constant(t, `initializer ${t.name}`);
    known.add(t.name ?? '');
  }
  for (const st of g.sparse_initializer ?? []) {
    constant(st.values, `sparse initializer ${st.values?.name}`);
    constant(st.indices, `sparse initializer ${st.values?.name}`);
    known.add(st.values?.name ?? '');
  }
  g.node.forEach((n, i) => {
    const label = n.name ? `node ${n.name}` : `node #${i}`;
    if (!n.op_type) throw new ModelError('MODEL_INVALID_GRAPH', `${label} in ${where} has no op_type`);
    acc.ops.add(n.domain && n.domain !== 'ai.onnx' ? `${n.domain}:${n.op_type}` : n.op_type);
    acc.nodes += 1;
    for (const name of n.input) {
      if (name !== '' && !known.has(name)) {
        throw new ModelError('MODEL_INVALID_GRAPH', `${label} (${n.op_type}) in ${where} reads '${name}', which nothing defines before it`);
      }
    }
    for (const a of n.attribute ?? []) {
      if (n.op_type === 'Constant' && !n.domain) constant(a.t, `Constant ${label}`);
      const subs = [...(a.g ? [a.g] : []), ...(a.graphs ?? [])];
      for (const sub of subs) {
        acc.subgraphs = true;
        walkGraph(sub, known, acc, `subgraph ${a.name} of ${label}`);
      }
    }
    for (const name of n.output) if (name !== '') known.add(name);
  });
  for (const v of g.output) {
    if (!known.has(v.name)) throw new ModelError('MODEL_INVALID_GRAPH', `output '${v.name}' of ${where} is never produced`);
  }
}

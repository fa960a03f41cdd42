// INT8 symmetric weight-only quantization for bundles: each large constant weight of MatMul, Gemm
// and Conv becomes an int8 initializer plus a float scale (per output channel where that lowers
// the error) feeding a DequantizeLinear whose output keeps the weight's original name, so the
// consuming node is untouched. Everything else stays float and is listed in report.skipped.
//
// Why this design (measured with onnxruntime-web 1.30 WASM, 1 thread, digits 784-128-10 MLP,
// batch 1; bench/bundle.ts re-measures it):
//   float model                                   ~0.024 ms/inference
//   int8 + DequantizeLinear, default session      ~0.070 ms  (DQ re-runs on every call: ~3x slower)
//   int8 + DequantizeLinear, QUANTIZED_SESSION_CONFIG ~0.024 ms (DQ constant-folded at load: float speed)
//   DynamicQuantizeLinear + MatMulInteger          ~0.034 ms  (per-call activation quantization: ~1.4x slower)
// So devices MUST create the quantized session with QUANTIZED_SESSION_CONFIG: with
// 'session.disable_quant_qdq' = '1' onnxruntime's constant folding no longer skips
// DequantizeLinear (it keeps it only for QDQ kernel fusion, which weight-only models never use),
// so the weights are dequantized once at load and the hot path is the float graph. The bundle
// on the wire is int8 (about a quarter of the float bytes); memory on device is float.
import protobuf from 'protobufjs';
import { z } from 'zod';
import { DataType } from '../onnx/onnx-proto.ts';
import { decodeModel, encodeModel, node as makeNode, readTensor, tensor, tensorElements } from '../onnx/graph-builder.ts';
import { inspectModel } from '../onnx/inspect-model.ts';
import type { OnnxGraph, OnnxNode, OnnxTensor } from '../onnx/types.ts';

/**
 * Session config entries the quantized model needs for float-speed inference in onnxruntime-web
 * (pass as createSession(bytes, { config: QUANTIZED_SESSION_CONFIG })). Without it the model still
 * runs and gives the same results, only ~3x slower per inference.
 */
export const QUANTIZED_SESSION_CONFIG: Readonly<Record<string, string>> = Object.freeze({ 'session.disable_quant_qdq': '1' });

export const QuantizeOptions = z.object({
  /** weights with fewer elements stay float: the DQ node and scale would eat the saving. */
  minElements: z.number().int().positive().default(256),
  /** 'auto' = per output channel when it cuts the quantization error by >= 10%. */
  perChannel: z.enum(['auto', 'always', 'never']).default('auto'),
  /** op types whose weight input is quantized. */
  ops: z.array(z.enum(['MatMul', 'Gemm', 'Conv'])).default(['MatMul', 'Gemm', 'Conv']),
  /**
   * TEST ONLY: multiplies every stored scale, producing a deliberately wrong model so the
   * accuracy gate can be shown to reject it. Never set in production.
   */
  debugScaleFactor: z.number().positive().optional(),
});
export type QuantizeOptions = z.input<typeof QuantizeOptions>;

export interface QuantizedWeight {
  node: string; opType: string; weight: string; perChannel: boolean; elements: number;
  /** output-channel axis of the weight (per-channel only). */
  axis?: number;
  /** RMS quantization error relative to the weight's RMS. */
  relativeError: number;
}
export interface SkippedInput { node: string; opType: string; input?: string; reason: string }
export interface QuantizeReport {
  quantized: QuantizedWeight[];
  skipped: SkippedInput[];
  floatBytes: number;
  quantBytes: number;
  sizeRatio: number;
  /** session config the result needs (see QUANTIZED_SESSION_CONFIG). */
  sessionConfig: Record<string, string>;
}

/** Which input holds the weight, and which weight axis is the output channel. */
function weightSlot(n: OnnxNode, rank: number): { index: number; axis: number } | string {
  switch (n.op_type) {
    case 'MatMul':
      // B is [..., K, N]: output channels along the last axis. A 1-D B has no channel axis.
      return rank >= 2 ? { index: 1, axis: rank - 1 } : 'weight is 1-D (a vector product)';
    case 'Gemm': {
      if (rank !== 2) return `Gemm weight has rank ${rank}, expected 2`;
      // transB=1: B is [N, K] (PyTorch Linear layout), channels on axis 0; else [K, N], axis 1.
      const transB = n.attribute?.find((a) => a.name === 'transB')?.i ?? 0;
      return { index: 1, axis: Number(transB) === 1 ? 0 : 1 };
    }
    case 'Conv':
      // W is [M, C/group, k...]: output channels (filters) on axis 0.
      return rank >= 3 ? { index: 1, axis: 0 } : `Conv weight has rank ${rank}, expected >= 3`;
    default:
      return `${n.op_type} is not quantized`;
  }
}

interface Quantized { q: Int8Array; scales: Float32Array; relErr: number }

/** Symmetric int8: scale = max|w| / 127 per group, q = round(w / scale) in [-127, 127]. */
function quantizeSymmetric(w: Float32Array, dims: number[], axis: number | null): Quantized {
  const channels = axis === null ? 1 : dims[axis];
  const inner = axis === null ? w.length : dims.slice(axis + 1).reduce((a, b) => a * b, 1);
  const channelOf = (i: number) => (axis === null ? 0 : Math.floor(i / inner) % channels);
  const maxAbs = new Float32Array(channels);
  for (let i = 0; i < w.length; i++) {
    const c = channelOf(i);
    const a = Math.abs(w[i]);
    if (a > maxAbs[c]) maxAbs[c] = a;
  }
  // An all-zero channel gets scale 1 (any positive value works; its q are all 0).
  const scales = maxAbs.map((m) => (m > 0 ? m / 127 : 1));
  const q = new Int8Array(w.length);
  let errSq = 0, sq = 0;
  for (let i = 0; i < w.length; i++) {
    const s = scales[channelOf(i)];
    const v = Math.max(-127, Math.min(127, Math.round(w[i] / s)));
    q[i] = v;
    errSq += (v * s - w[i]) ** 2;
    sq += w[i] ** 2;
  }
  return { q, scales, relErr: sq > 0 ? Math.sqrt(errSq / sq) : 0 };
}

export function quantizeModel(floatBytes: Uint8Array, options: QuantizeOptions = {}): { bytes: Uint8Array; report: QuantizeReport } {
  const opts = QuantizeOptions.parse(options);
  const info = inspectModel(floatBytes); // throws ModelError for anything that is not a sane model
  refuseDroppedFields(floatBytes);
  const m = decodeModel(floatBytes);
  const g = m.graph as OnnxGraph;
  // Per-axis DequantizeLinear arrived in opset 13; older models get per-tensor scales only.
  const allowPerChannel = info.opset >= 13 && opts.perChannel !== 'never';

  const inits = new Map<string, OnnxTensor>((g.initializer ?? []).map((t) => [t.name ?? '', t]));
  const graphInputs = new Set(g.input.map((v) => v.name));
  const uses = countUses(g);
  const takenNames = new Set<string>([...inits.keys(), ...g.node.flatMap((n) => n.output)]);
  const fresh = (base: string) => {
    let name = base;
    for (let i = 1; takenNames.has(name); i++) name = `${base}_${i}`;
    takenNames.add(name);
    return name;
  };

  const quantized: QuantizedWeight[] = [];
  const skipped: SkippedInput[] = [];
  const dqNodes: OnnxNode[] = [];
  const newInits: OnnxTensor[] = [];
  const replaced = new Set<string>();

  g.node.forEach((n, i) => {
    const label = n.name || `${n.op_type}#${i}`;
    const candidate = (opts.ops as string[]).includes(n.op_type) && !n.domain;
    const weightName = candidate ? n.input[1] : undefined;
    if (candidate) {
      const reason = skipReason(n, weightName, inits, graphInputs, uses, opts.minElements);
      if (typeof reason === 'string') {
        skipped.push({ node: label, opType: n.op_type, input: weightName, reason });
      } else {
        const { w, dims, axis } = reason;
        const perTensor = quantizeSymmetric(w, dims, null);
        let chosen = perTensor;
        let perChannel = false;
        if (allowPerChannel && dims[axis] > 1) {
          const pc = quantizeSymmetric(w, dims, axis);
          if (opts.perChannel === 'always' || pc.relErr < 0.9 * perTensor.relErr) { chosen = pc; perChannel = true; }
        }
        const scales = opts.debugScaleFactor ? chosen.scales.map((s) => s * opts.debugScaleFactor!) : chosen.scales;
        const qName = fresh(`${weightName}_int8`);
        const sName = fresh(`${weightName}_scale`);
        newInits.push(tensor(qName, chosen.q, dims, DataType.INT8));
        newInits.push(perChannel ? tensor(sName, scales, [scales.length]) : tensor(sName, scales, []));
        // The DQ output takes the float weight's name, so the consumer node needs no change.
        dqNodes.push(makeNode('DequantizeLinear', [qName, sName], [weightName!], perChannel ? { axis } : {},
          { name: fresh(`${weightName}_DequantizeLinear`) }));
        replaced.add(weightName!);
        quantized.push({
          node: label, opType: n.op_type, weight: weightName!, perChannel, elements: w.length,
          ...(perChannel ? { axis } : {}), relativeError: chosen.relErr,
        });
      }
    }
    // Report the other float constants this node reads (biases, scalars, non-candidate ops' weights).
    n.input.forEach((name, idx) => {
      if (name === weightName || !inits.has(name)) return;
      const t = inits.get(name)!;
      if ((t.data_type ?? DataType.FLOAT) !== DataType.FLOAT) return;
      const reason = candidate && idx === 2
        ? 'bias stays float (tiny, and int8 bias would need the int32 accumulator scale)'
        : candidate ? `input ${idx} of ${n.op_type} is not a weight`
          : `${n.op_type} is not a quantized op type (only ${opts.ops.join('/')} weights are)`;
      skipped.push({ node: label, opType: n.op_type, input: name, reason });
    });
    // Nodes in subgraphs (If/Loop/Scan bodies) are left alone.
    for (const a of n.attribute ?? []) {
      for (const sub of [...(a.g ? [a.g] : []), ...(a.graphs ?? [])]) {
        for (const sn of allNodes(sub)) {
          if ((opts.ops as string[]).includes(sn.op_type)) {
            skipped.push({ node: sn.name || sn.op_type, opType: sn.op_type, reason: `inside subgraph '${a.name}' of ${label}; only the main graph is rewritten` });
          }
        }
      }
    }
  });

  g.initializer = [...(g.initializer ?? []).filter((t) => !replaced.has(t.name ?? '')), ...newInits];
  // DQ nodes read only initializers, so putting them first keeps the node list topologically sorted.
  g.node = [...dqNodes, ...g.node];
  const bytes = quantized.length > 0 ? encodeModel(m) : new Uint8Array(floatBytes);
  return {
    bytes,
    report: {
      quantized, skipped,
      floatBytes: floatBytes.length, quantBytes: bytes.length, sizeRatio: bytes.length / floatBytes.length,
      sessionConfig: { ...QUANTIZED_SESSION_CONFIG },
    },
  };
}

function skipReason(
  n: OnnxNode, weightName: string | undefined, inits: Map<string, OnnxTensor>, graphInputs: Set<string>,
  uses: Map<string, number>, minElements: number,
): string | { w: Float32Array; dims: number[]; axis: number } {
  if (!weightName) return `${n.op_type} has no weight input`;
  const t = inits.get(weightName);
  if (!t) return `weight '${weightName}' is not a constant initializer (computed or fed at run time)`;
  if (graphInputs.has(weightName)) return `initializer '${weightName}' is also a graph input, so callers may override it`;
  if ((t.data_type ?? DataType.FLOAT) !== DataType.FLOAT) return `weight '${weightName}' is not float32 (data_type ${t.data_type})`;
  const count = uses.get(weightName) ?? 0;
  if (count > 1) return `weight '${weightName}' is shared with another op or output (${count} uses)`;
  const dims = (t.dims ?? []).map(Number);
  const slot = weightSlot(n, dims.length);
  if (typeof slot === 'string') return slot;
  const elements = tensorElements(t);
  if (elements < minElements) return `weight '${weightName}' has ${elements} elements (< ${minElements}); not worth a DequantizeLinear`;
  return { w: readTensor(t) as Float32Array, dims, axis: slot.axis };
}

/** Uses of each name: node inputs anywhere (subgraphs included) and graph outputs. */
function countUses(g: OnnxGraph): Map<string, number> {
  const uses = new Map<string, number>();
  const bump = (name: string) => uses.set(name, (uses.get(name) ?? 0) + 1);
  for (const n of allNodes(g)) for (const name of n.input) if (name) bump(name);
  for (const o of g.output) bump(o.name);
  return uses;
}

function* allNodes(g: OnnxGraph): Generator<OnnxNode> {
  for (const n of g.node) {
    yield n;
    for (const a of n.attribute ?? []) {
      for (const sub of [...(a.g ? [a.g] : []), ...(a.graphs ?? [])]) yield* allNodes(sub);
    }
  }
}

/**
 * The protobuf schema is a subset: re-encoding drops fields it does not know. Model-local
 * functions (ModelProto field 25) would break the model if dropped, so refuse those; training
 * info (20) is irrelevant to inference and may go.
 */
function refuseDroppedFields(bytes: Uint8Array): void {
  const r = protobuf.Reader.create(bytes);
  while (r.pos < r.len) {
    const tag = r.uint32();
    if (tag >>> 3 === 25) throw new Error('model defines ONNX functions (ModelProto.functions), which the quantizer cannot carry over');
    r.skipType(tag & 7);
  }
}

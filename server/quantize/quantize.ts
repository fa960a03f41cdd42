// INT8 symmetric weight-only quantization for bundles. Each large float weight of Conv,
// ConvTranspose, MatMul and Gemm (optionally LSTM/GRU/RNN) becomes an int8 tensor plus a float
// scale (per output channel where that lowers the error), turned back into float by
// Cast(to=FLOAT) -> Mul(scale) whose output keeps the weight's original name, so every consumer
// is untouched. Weights are found wherever exporters put them (weights.ts): initializers, initializers
// also listed as graph inputs, Constant nodes, and inside If/Loop/Scan bodies.
//
// Why Cast -> Mul and not DequantizeLinear (onnxruntime-web 1.30 WASM, 1 thread; bench/corpus.ts
// re-measures it, ARCHITECTURE.md "Quantization" has the figures):
// - onnxruntime constant-folds Cast and Mul of initializers at session creation, so the hot path is
//   the float graph with no session config at all; DequantizeLinear is only folded with
//   'session.disable_quant_qdq' = '1' (otherwise it re-runs every call, ~3x slower).
// - Cast(to) exists from opset 6 and broadcasting Mul from opset 7 (ORT's own floor), while
//   DequantizeLinear needs opset 10 and per-axis scales opset 13; raising a model's opset is not free
//   (Squeeze/Unsqueeze/Split/Reduce* moved axes to inputs at 13, Upsample became Resize).
// - The int8 tensor on the wire is a quarter of the float bytes; memory on device is float.
// The 'dequantize-linear' representation stays available (opset >= 10) for comparison.
import { z } from 'zod';
import { DataType } from '../onnx/onnx-proto.ts';
import { attr, decodeModel, encodeModel, node as makeNode, readTensor, tensor } from '../onnx/graph-builder.ts';
import { inspectModel } from '../onnx/inspect-model.ts';
import type { OnnxGraph, OnnxModel, OnnxNode } from '../onnx/types.ts';
import { chooseBestAxis, chooseQuantization } from './int8.ts';
import { AXIS_BEST, scanWeights, type WeightDef, type WeightSource } from './weights.ts';

/**
 * Session config a 'dequantize-linear' model needs for float-speed inference (its DQ nodes are
 * folded at load only with it). The default 'cast-mul' representation needs none: report.sessionConfig
 * says what a given result needs. Passing it to a cast-mul model is harmless.
 */
export const QUANTIZED_SESSION_CONFIG: Readonly<Record<string, string>> = Object.freeze({ 'session.disable_quant_qdq': '1' });

export const QUANTIZABLE_OPS = ['Conv', 'ConvTranspose', 'MatMul', 'Gemm', 'LSTM', 'GRU', 'RNN'] as const;

export const QuantizeOptions = z.object({
  /** weights with fewer elements stay float: the int8 copy, its scale and two nodes would eat the saving. */
  minElements: z.number().int().positive().default(256),
  /** 'auto' = per output channel when it cuts the quantization error by >= 10%. */
  perChannel: z.enum(['auto', 'always', 'never']).default('auto'),
  /** op types whose weight inputs are quantized (LSTM/GRU/RNN: W and R; silero_vad_legacy: 71% -> 29% of float bytes). */
  ops: z.array(z.enum(QUANTIZABLE_OPS)).default([...QUANTIZABLE_OPS]),
  /** how the int8 weight becomes float again in the graph (see the file comment). */
  representation: z.enum(['cast-mul', 'dequantize-linear']).default('cast-mul'),
  /**
   * TEST ONLY: multiplies every stored scale, producing a deliberately wrong model so the
   * accuracy gate can be shown to reject it. Never set in production.
   */
  debugScaleFactor: z.number().positive().optional(),
});
export type QuantizeOptions = z.input<typeof QuantizeOptions>;

export interface QuantizedWeight {
  /** the first node reading the weight (all of them: consumers). */
  node: string; opType: string; weight: string;
  /** graph holding the weight: 'main' or e.g. 'If_12.then_branch'. */
  graph: string;
  source: WeightSource;
  perChannel: boolean; elements: number;
  /** output-channel axis of the weight (per-channel only). */
  axis?: number;
  /** RMS quantization error relative to the weight's RMS. */
  relativeError: number;
  consumers: string[];
}
export interface SkippedInput { node: string; opType: string; input?: string; graph?: string; reason: string; bytes?: number }
export interface QuantizeReport {
  quantized: QuantizedWeight[];
  skipped: SkippedInput[];
  /** whole-model bytes, float and quantized. */
  floatBytes: number;
  quantBytes: number;
  sizeRatio: number;
  /** float32 bytes of every constant tensor in the float model. */
  floatWeightBytes: number;
  /** float32 bytes of the weights that were quantized. */
  quantizedWeightBytes: number;
  /** floatWeightBytes - quantizedWeightBytes: what stays float (biases, norms, small or refused weights). */
  skippedWeightBytes: number;
  /** initializers older exporters also listed as graph inputs, quantized and no longer overridable. */
  removedGraphInputs: string[];
  representation: 'cast-mul' | 'dequantize-linear';
  /** session config the result needs for float-speed inference ({} for cast-mul). */
  sessionConfig: Record<string, string>;
  summary: string;
}

export function quantizeModel(floatBytes: Uint8Array, options: QuantizeOptions = {}): { bytes: Uint8Array; report: QuantizeReport } {
  const opts = QuantizeOptions.parse(options);
  const info = inspectModel(floatBytes); // throws ModelError for anything that is not a sane model
  const m = decodeModel(floatBytes);
  const scan = scanWeights(m.graph!, opts.ops, opts.minElements);
  const skipped: SkippedInput[] = [...scan.skipped];
  for (const f of m.functions ?? []) {
    for (const n of f.node ?? []) {
      if ((opts.ops as string[]).includes(n.op_type)) {
        skipped.push({ node: n.name || n.op_type, opType: n.op_type, graph: `function ${f.domain}:${f.name}`, reason: 'inside a model-local function; function bodies are not rewritten' });
      }
    }
  }

  let weights = scan.weights;
  const dq = opts.representation === 'dequantize-linear';
  if (dq && info.opset < 10) {
    for (const w of weights) skipped.push({ ...firstUse(w), input: w.name, reason: `DequantizeLinear needs opset 10; the model has opset ${info.opset}` });
    weights = [];
  }
  const perChannelMode = dq && info.opset < 13 ? 'never' : opts.perChannel;

  const fresh = freshNames(m);
  const quantized: QuantizedWeight[] = [];
  const removedGraphInputs: string[] = [];
  const useInitializers = (m.ir_version ?? 0) >= 4; // IR 3 requires every initializer to be a graph input too
  let quantizedWeightBytes = 0;
  for (const w of weights) {
    const data = readTensor(w.tensor) as Float32Array;
    const dims = (w.tensor.dims ?? []).map(Number);
    const chosen = w.uses[0].axis === AXIS_BEST
      ? chooseBestAxis(data, dims, perChannelMode)
      : { ...chooseQuantization(data, dims, w.uses[0].axis, perChannelMode), axis: w.uses[0].axis };
    const axis = chosen.axis;
    const scales = opts.debugScaleFactor ? chosen.scales.map((s) => s * opts.debugScaleFactor!) : chosen.scales;
    const qName = fresh(`${w.name}_int8`);
    const sName = fresh(`${w.name}_scale`);
    const q = tensor(qName, chosen.q, dims, DataType.INT8);
    // Cast -> Mul broadcasts the scale, shaped [1,..,C,..,1]; DequantizeLinear takes a 1-D scale and an axis.
    const scaleDims = !chosen.perChannel ? [] : dq ? [scales.length] : dims.map((d, i) => (i === axis ? d : 1));
    const s = tensor(sName, scales, scaleDims);
    const compute: OnnxNode[] = dq
      ? [makeNode('DequantizeLinear', [qName, sName], [w.name], chosen.perChannel ? { axis } : {}, { name: fresh(`${w.name}_DequantizeLinear`) })]
      : (() => {
        const cast = fresh(`${w.name}_int8_float`);
        return [
          makeNode('Cast', [qName], [cast], { to: DataType.FLOAT }, { name: fresh(`${w.name}_Cast`) }),
          makeNode('Mul', [cast, sName], [w.name], {}, { name: fresh(`${w.name}_Mul`) }),
        ];
      })();
    // Where the int8 copy and its Cast/Mul live: beside the float weight, except when every reader
    // sits in one subgraph below it (a main-graph initializer read only inside an If branch): then
    // in that subgraph, so the branch carries its own weights. onnxruntime folds it either way
    // (measured: a batch-1 MatMul in an If branch runs at float speed with both placements).
    const home = w.uses.every((u) => u.scope === w.uses[0].scope) ? w.uses[0].scope : w.scope;
    const g = home.graph;
    if (home !== w.scope) dropInitializer(w.scope.graph, w.name);
    if (w.source === 'constant-node' || !useInitializers) {
      const asConstant = (t: typeof q) => makeNode('Constant', [], [t.name!], { value: attr.tensor({ ...t, name: undefined }) }, { name: fresh(`${t.name}_Constant`) });
      const inPlace = w.constNode && home === w.scope;
      if (w.constNode && !inPlace) w.scope.graph.node.splice(w.scope.graph.node.indexOf(w.constNode), 1);
      g.node.splice(inPlace ? g.node.indexOf(w.constNode!) : 0, inPlace ? 1 : 0, asConstant(q), asConstant(s), ...compute);
      if (!w.constNode) dropInitializer(w.scope.graph, w.name);
    } else {
      dropInitializer(w.scope.graph, w.name);
      g.initializer = [...(g.initializer ?? []), q, s];
      // The compute nodes read only initializers, so putting them first keeps the graph sorted.
      g.node.unshift(...compute);
    }
    if (w.source === 'graph-input-initializer') {
      w.scope.graph.input = w.scope.graph.input.filter((v) => v.name !== w.name);
      removedGraphInputs.push(w.name);
    }
    quantizedWeightBytes += data.length * 4;
    quantized.push({
      ...firstUse(w), weight: w.name, source: w.source, perChannel: chosen.perChannel, elements: data.length,
      ...(chosen.perChannel ? { axis } : {}), relativeError: chosen.relErr,
      consumers: [...new Set(w.uses.map((u) => u.node))],
    });
  }

  const bytes = quantized.length > 0 ? encodeModel(m) : new Uint8Array(floatBytes);
  const report: QuantizeReport = {
    quantized, skipped,
    floatBytes: floatBytes.length, quantBytes: bytes.length, sizeRatio: bytes.length / floatBytes.length,
    floatWeightBytes: scan.floatConstantBytes, quantizedWeightBytes,
    skippedWeightBytes: scan.floatConstantBytes - quantizedWeightBytes,
    removedGraphInputs,
    representation: opts.representation,
    sessionConfig: dq && quantized.length > 0 ? { ...QUANTIZED_SESSION_CONFIG } : {},
    summary: '',
  };
  report.summary = summarize(report, scan.constantWeightSlots, opts.ops);
  return { bytes, report };
}

function firstUse(w: WeightDef): { node: string; opType: string; graph: string } {
  return { node: w.uses[0].node, opType: w.uses[0].opType, graph: w.scope.path };
}

function dropInitializer(g: OnnxGraph, name: string): void {
  g.initializer = (g.initializer ?? []).filter((t) => t.name !== name);
}

/** Names unused anywhere in the model (ONNX forbids a subgraph reusing an outer name). */
function freshNames(m: OnnxModel): (base: string) => string {
  const taken = new Set<string>();
  const walk = (g: OnnxGraph) => {
    for (const v of [...g.input, ...g.output, ...(g.value_info ?? [])]) taken.add(v.name);
    for (const t of g.initializer ?? []) taken.add(t.name ?? '');
    for (const n of g.node) {
      for (const o of n.output) taken.add(o);
      if (n.name) taken.add(n.name);
      for (const a of n.attribute ?? []) for (const sub of [...(a.g ? [a.g] : []), ...(a.graphs ?? [])]) walk(sub);
    }
  };
  walk(m.graph!);
  return (base) => {
    let name = base;
    for (let i = 1; taken.has(name); i++) name = `${base}_${i}`;
    taken.add(name);
    return name;
  };
}

function summarize(r: QuantizeReport, slots: number, ops: readonly string[]): string {
  // Name the op types the model has weights for, not every type the quantizer knows.
  const present = new Set([...r.quantized.map((q) => q.opType), ...r.skipped.filter((s) => s.reason.startsWith('weight')).map((s) => s.opType)]);
  const kinds = ops.filter((o) => present.has(o)).join('/') || ops.join('/');
  const pct = r.floatWeightBytes > 0 ? (100 * r.quantizedWeightBytes / r.floatWeightBytes).toFixed(1) : '0.0';
  if (r.quantized.length === 0) {
    const reasons = [...new Set(r.skipped.filter((s) => (ops as string[]).includes(s.opType)).map((s) => s.reason.replace(/'[^']*'/g, '…')))];
    return `nothing quantized: ${reasons.length ? reasons.slice(0, 3).join('; ') : `no ${kinds} weights in the model`}`;
  }
  const removed = r.removedGraphInputs.length ? `; ${r.removedGraphInputs.length} of them were also graph inputs and no longer are` : '';
  return `quantized ${r.quantized.length} of ${slots} constant ${kinds} weights, ${pct}% of float weight bytes; `
    + `model is ${(100 * r.sizeRatio).toFixed(1)}% of its float size${removed}`;
}

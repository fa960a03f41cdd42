// Finds the constant weights of the ops the quantizer rewrites, wherever exporters put them:
// initializers (also those older exporters list among the graph inputs), `Constant` nodes
// (tf2onnx, spox, paddle2onnx), and inside If/Loop/Scan bodies, where a weight may be the body's
// own or an enclosing graph's (outer scope). Pure: it reads the model and changes nothing.
import { DataType } from '../onnx/onnx-proto.ts';
import { elemSize, tensorElements } from '../onnx/graph-builder.ts';
import type { OnnxGraph, OnnxNode, OnnxTensor } from '../onnx/types.ts';

export type WeightSource = 'initializer' | 'graph-input-initializer' | 'constant-node';

export interface Scope {
  graph: OnnxGraph;
  /** 'main', or the owning node and attribute: 'If_12.then_branch', nested with '/'. */
  path: string;
  parent?: Scope;
  inits: Map<string, OnnxTensor>;
  consts: Map<string, OnnxNode>;
  inputs: Set<string>;
  outputs: Set<string>;
}

export interface WeightUse { node: string; opType: string; graph: string; axis: number; scope: Scope }

/** One constant tensor some rewritten op reads as its weight. */
export interface WeightDef {
  name: string;
  scope: Scope;
  source: WeightSource;
  tensor: OnnxTensor;
  /** the Constant node holding it (source 'constant-node'). */
  constNode?: OnnxNode;
  uses: WeightUse[];
}

export interface SkippedUse { node: string; opType: string; input?: string; graph: string; reason: string; bytes?: number }

export interface WeightScan {
  weights: WeightDef[];
  skipped: SkippedUse[];
  /** float32 bytes of every constant tensor in the model (initializers and Constant nodes, all graphs). */
  floatConstantBytes: number;
  /** distinct constant tensors read in a weight slot of a rewritten op (quantizable or not). */
  constantWeightSlots: number;
}

/** Which inputs of an op hold its weight, and which axis of that weight is the output channel. */
interface Slot { index: number; axis: (rank: number) => number | string; primary: boolean }

const rankAtLeast = (min: number, axis: (r: number) => number, what: string) => (r: number) =>
  r >= min ? axis(r) : `${what} has rank ${r}, expected >= ${min}`;

export function weightSlots(n: OnnxNode): Slot[] {
  switch (n.op_type) {
    case 'MatMul':
      // B [..., K, N]: channels on the last axis. A constant A [..., M, K] (W @ x): rows.
      return [
        { index: 1, axis: rankAtLeast(2, (r) => r - 1, 'MatMul weight'), primary: true },
        { index: 0, axis: rankAtLeast(2, (r) => r - 2, 'MatMul constant A'), primary: false },
      ];
    case 'Gemm': {
      // transB=1: B is [N, K] (PyTorch Linear layout), channels on axis 0; else [K, N], axis 1.
      const transB = Number(n.attribute?.find((a) => a.name === 'transB')?.i ?? 0);
      return [{ index: 1, axis: (r) => (r === 2 ? (transB === 1 ? 0 : 1) : `Gemm weight has rank ${r}, expected 2`), primary: true }];
    }
    case 'Conv': // W [M, C/group, k...]: filters on axis 0.
      return [{ index: 1, axis: rankAtLeast(3, () => 0, 'Conv weight'), primary: true }];
    case 'ConvTranspose': // W [C, M/group, k...]: output channels on axis 1.
      return [{ index: 1, axis: rankAtLeast(3, () => 1, 'ConvTranspose weight'), primary: true }];
    case 'LSTM': case 'GRU': case 'RNN': // W [dirs, gates*H, I], R [dirs, gates*H, H]: gate rows on axis 1.
      return [
        { index: 1, axis: rankAtLeast(3, () => 1, `${n.op_type} W`), primary: true },
        { index: 2, axis: rankAtLeast(3, () => 1, `${n.op_type} R`), primary: true },
      ];
    default:
      return [];
  }
}

function makeScope(graph: OnnxGraph, path: string, parent?: Scope): Scope {
  const consts = new Map<string, OnnxNode>();
  for (const n of graph.node) {
    const value = n.attribute?.find((a) => a.name === 'value' && a.t);
    if (n.op_type === 'Constant' && !n.domain && value && n.output.length === 1) consts.set(n.output[0], n);
  }
  return {
    graph, path, parent, consts,
    inits: new Map((graph.initializer ?? []).map((t) => [t.name ?? '', t])),
    inputs: new Set(graph.input.map((v) => v.name)),
    outputs: new Set(graph.output.map((v) => v.name)),
  };
}

type Constant = { kind: 'constant'; scope: Scope; source: WeightSource; tensor: OnnxTensor; constNode?: OnnxNode; name: string };
type Resolved =
  | Constant
  /** computed from constants by data-movement ops only (spox writes LSTM weights as Concat of Slices, then Unsqueeze). */
  | { kind: 'moved'; sources: Constant[]; via: string }
  | { kind: 'runtime'; why: string };

/** Ops that only move or reshape values; the data inputs they read. Values through them are the constants' values. */
const MOVES: Record<string, number[] | 'all'> = {
  Identity: [0], Unsqueeze: [0], Squeeze: [0], Reshape: [0], Flatten: [0], Transpose: [0], Slice: [0],
  Gather: [0], Split: [0], Concat: 'all',
};

/** Finds what defines `name` as seen from `scope`: its own graph first, then the enclosing ones. */
function resolve(name: string, scope: Scope, depth = 0): Resolved {
  for (let s: Scope | undefined = scope; s; s = s.parent) {
    const init = s.inits.get(name);
    if (init) {
      if (!s.inputs.has(name)) return { kind: 'constant', scope: s, source: 'initializer', tensor: init, name };
      // In the main graph an initializer listed as an input is an overridable default (IR < 4
      // exporters list every initializer there); a subgraph's inputs are its formal parameters.
      if (!s.parent) return { kind: 'constant', scope: s, source: 'graph-input-initializer', tensor: init, name };
      return { kind: 'runtime', why: 'is an input of its subgraph' };
    }
    const c = s.consts.get(name);
    if (c) return { kind: 'constant', scope: s, source: 'constant-node', tensor: c.attribute!.find((a) => a.name === 'value')!.t!, constNode: c, name };
    if (s.inputs.has(name)) return { kind: 'runtime', why: 'is a graph input fed at run time' };
    const producer = s.graph.node.find((n) => n.output.includes(name));
    if (producer) return depth < 8 ? throughMoves(producer, s, depth) : { kind: 'runtime', why: 'is computed by another node' };
  }
  return { kind: 'runtime', why: 'is not defined by any constant' };
}

function throughMoves(p: OnnxNode, s: Scope, depth: number): Resolved {
  const data = (!p.domain || p.domain === 'ai.onnx') ? MOVES[p.op_type] : undefined;
  if (!data) return { kind: 'runtime', why: `is computed by ${p.op_type} ${p.name ?? ''}`.trimEnd() };
  const sources: Constant[] = [];
  const inputs = data === 'all' ? p.input : data.map((i) => p.input[i]);
  for (const name of inputs.filter(Boolean)) {
    const r = resolve(name, s, depth + 1);
    if (r.kind === 'runtime') return { kind: 'runtime', why: `is computed by ${p.op_type} from a value that ${r.why}` };
    sources.push(...(r.kind === 'moved' ? r.sources : [r]));
  }
  return { kind: 'moved', sources, via: p.op_type };
}

const label = (n: OnnxNode, i: number) => n.name || `${n.op_type}#${i}`;
const floatBytes = (t: OnnxTensor) => ((t.data_type ?? DataType.FLOAT) === DataType.FLOAT ? tensorElements(t) * elemSize(DataType.FLOAT) : 0);

export function scanWeights(main: OnnxGraph, ops: readonly string[], minElements: number): WeightScan {
  const defs = new Map<string, WeightDef>();
  const refused = new Set<string>();
  const skipped: SkippedUse[] = [];
  // Float constants read outside a weight slot; dropped at the end if the same tensor is quantized
  // as another op's weight (a Slice or Unsqueeze moving an LSTM weight into place reads it too).
  const others: { entry: SkippedUse; key: string }[] = [];
  let floatConstantBytes = 0;

  const visit = (scope: Scope) => {
    for (const t of scope.inits.values()) floatConstantBytes += floatBytes(t);
    for (const c of scope.consts.values()) floatConstantBytes += floatBytes(c.attribute!.find((a) => a.name === 'value')!.t!);
    scope.graph.node.forEach((n, i) => {
      const node = label(n, i);
      const where = { node, opType: n.op_type, graph: scope.path };
      const candidate = ops.includes(n.op_type) && (!n.domain || n.domain === 'ai.onnx');
      const slots = candidate ? weightSlots(n) : [];
      const slotIndexes = new Set<number>();
      for (const slot of slots) {
        const name = n.input[slot.index];
        if (!name) continue;
        const r = resolve(name, scope);
        if (r.kind === 'runtime') {
          if (slot.primary) skipped.push({ ...where, input: name, reason: `weight '${name}' ${r.why}, not a constant` });
          continue;
        }
        slotIndexes.add(slot.index);
        // A weight moved into place (Slice/Concat/Unsqueeze...) is quantized at its constant sources,
        // each along whichever of its own axes gives the least error (AXIS_BEST).
        for (const c of r.kind === 'moved' ? r.sources : [r]) {
          const key = `${c.scope.path}\u0000${c.name}`;
          const reason = refusal(c.name, c.tensor, c.scope, r.kind === 'moved' ? null : slot, minElements);
          if (typeof reason === 'string') {
            skipped.push({ ...where, input: c.name, reason, bytes: floatBytes(c.tensor) });
            refused.add(key);
            continue;
          }
          const def = defs.get(key) ?? { name: c.name, scope: c.scope, source: c.source, tensor: c.tensor, constNode: c.constNode, uses: [] };
          def.uses.push({ ...where, axis: reason.axis, scope: r.kind === 'moved' ? c.scope : scope });
          defs.set(key, def);
        }
      }
      // The other float constants this node reads (biases, scales, weights of ops not rewritten).
      n.input.forEach((name, idx) => {
        if (!name || slotIndexes.has(idx)) return;
        const r = resolve(name, scope);
        if (r.kind !== 'constant' || (r.tensor.data_type ?? DataType.FLOAT) !== DataType.FLOAT) return;
        const reason = candidate && (n.op_type === 'Gemm' ? idx === 2 : idx === 2 || idx === 3)
          ? 'bias stays float (small, and added after the product)'
          : candidate ? `input ${idx} of ${n.op_type} is not a weight`
            : `${n.op_type} is not a quantized op type (only ${ops.join('/')} weights are)`;
        others.push({ entry: { ...where, input: name, reason, bytes: floatBytes(r.tensor) }, key: `${r.scope.path}\u0000${r.name}` });
      });
      for (const a of n.attribute ?? []) {
        const subs = [...(a.g ? [a.g] : []), ...(a.graphs ?? [])];
        subs.forEach((sub, k) => {
          const name = `${node}.${a.name}${subs.length > 1 ? `[${k}]` : ''}`;
          visit(makeScope(sub, scope.parent ? `${scope.path}/${name}` : name, scope));
        });
      }
    });
  };
  visit(makeScope(main, 'main'));

  // A tensor refused for one consumer (say, a Gemm reading it with the wrong rank) stays float for all.
  const weights = [...defs.entries()].filter(([k]) => !refused.has(k)).map(([, d]) => d);
  for (const o of others) if (!defs.has(o.key) || refused.has(o.key)) skipped.push(o.entry);
  for (const [k, d] of defs) {
    if (!refused.has(k)) continue;
    for (const u of d.uses) skipped.push({ node: u.node, opType: u.opType, input: d.name, graph: u.graph, reason: `weight '${d.name}' is refused for another consumer`, bytes: floatBytes(d.tensor) });
  }
  return { weights, skipped, floatConstantBytes, constantWeightSlots: new Set([...defs.keys(), ...refused]).size };
}

/** Axis marker for a weight reaching its op through data-movement ops: pick the axis with the least error. */
export const AXIS_BEST = -1;

function refusal(name: string, t: OnnxTensor, scope: Scope, slot: Slot | null, minElements: number): string | { axis: number } {
  if ((t.data_type ?? DataType.FLOAT) !== DataType.FLOAT) return `weight '${name}' is not float32 (data_type ${t.data_type})`;
  if (t.data_location === 1 || (t.external_data?.length ?? 0) > 0) return `weight '${name}' is stored in an external file`;
  if (scope.outputs.has(name)) return `weight '${name}' is also a graph output`;
  const dims = (t.dims ?? []).map(Number);
  const axis = slot ? slot.axis(dims.length) : AXIS_BEST;
  if (typeof axis === 'string') return axis;
  const elements = tensorElements(t);
  if (elements < minElements) return `weight '${name}' has ${elements} elements (< ${minElements}); not worth the int8 copy and its scale`;
  return { axis };
}

// Runs a chain (shared/messages.ts Chain): each step one model, its inputs taken from the chain's inputs
// or from earlier steps' outputs through simple transforms. Pure apart from `run`, which the caller gives
// (the agent: its loaded models; the server: sessions on the exact artifacts, to make the golden outputs),
// so device and server compute a chain the same way.
import type { Chain, ChainTransform } from './messages.ts';

export interface ChainTensor { data: ArrayLike<number> | ArrayLike<bigint>; dims: readonly number[]; type?: string }
export type ChainFeeds = Record<string, ChainTensor>;

export class ChainError extends Error {
  readonly code = 'CHAIN_INVALID';
  constructor(message: string) {
    super(message);
    this.name = 'ChainError';
  }
}

/** Static checks against the set it runs on: every step's model is in the set, every source named before use. */
export function checkChain(chain: Chain, modelIds: readonly string[]): void {
  const seen = new Set<string>();
  for (const [i, step] of chain.steps.entries()) {
    if (!modelIds.includes(step.modelId)) throw new ChainError(`step ${i} runs ${step.modelId}, which is not in the set (${modelIds.join(', ')})`);
    for (const [input, src] of Object.entries(step.inputs)) {
      if (src.from !== 'input' && !seen.has(src.from)) throw new ChainError(`step ${i} (${step.modelId}) input ${input} reads ${src.from}, which no earlier step runs`);
    }
    seen.add(step.modelId);
  }
}

function floats(t: ChainTensor): Float32Array {
  return t.data instanceof Float32Array ? t.data : Float32Array.from(t.data as ArrayLike<number>, Number);
}

export function applyTransform(t: ChainTensor, tr: ChainTransform): ChainTensor {
  const n = t.dims.reduce((a, b) => a * b, 1);
  switch (tr.op) {
    case 'affine': {
      const x = floats(t);
      const out = new Float32Array(x.length);
      for (let i = 0; i < x.length; i++) out[i] = x[i] * tr.mul + tr.add;
      return { data: out, dims: [...t.dims], type: 'float32' };
    }
    case 'windows': {
      const x = floats(t);
      if (x.length % tr.frame !== 0) throw new ChainError(`windows: ${x.length} values are not whole frames of ${tr.frame}`);
      const frames = x.length / tr.frame;
      if (frames < tr.size) throw new ChainError(`windows: ${frames} frames, a window needs ${tr.size}`);
      const count = Math.floor((frames - tr.size) / tr.stride) + 1;
      const out = new Float32Array(count * tr.size * tr.frame);
      for (let w = 0; w < count; w++) out.set(x.subarray(w * tr.stride * tr.frame, (w * tr.stride + tr.size) * tr.frame), w * tr.size * tr.frame);
      return { data: out, dims: [count, tr.size, tr.frame], type: 'float32' };
    }
    case 'last': {
      const first = t.dims[0] ?? 1;
      if (first < tr.rows) throw new ChainError(`last: ${first} rows, ${tr.rows} wanted`);
      const row = first === 0 ? 0 : n / first;
      const x = floats(t);
      return { data: x.slice((first - tr.rows) * row), dims: [tr.rows, ...t.dims.slice(1)], type: 'float32' };
    }
    case 'reshape': {
      const free = tr.dims.filter((d) => d === -1).length;
      if (free > 1) throw new ChainError('reshape: at most one -1');
      const known = tr.dims.filter((d) => d !== -1).reduce((a, b) => a * b, 1);
      const dims = tr.dims.map((d) => (d === -1 ? n / known : d));
      if (!dims.every((d) => Number.isInteger(d)) || dims.reduce((a, b) => a * b, 1) !== n) throw new ChainError(`reshape: ${t.dims.join('x')} (${n} values) cannot become ${tr.dims.join('x')}`);
      return { data: t.data, dims, ...(t.type ? { type: t.type } : {}) };
    }
  }
}

/** Run every step in order; the chain's outputs are the last step's, and each step's outputs are reported to `onStep`. */
export async function runChain<T extends ChainTensor>(chain: Chain, inputs: ChainFeeds, run: (modelId: string, feeds: Record<string, ChainTensor>) => Promise<Record<string, T>>): Promise<Record<string, T>> {
  const results = new Map<string, Record<string, ChainTensor>>([['input', inputs]]);
  let last: Record<string, T> = {};
  for (const [i, step] of chain.steps.entries()) {
    const feeds: Record<string, ChainTensor> = {};
    for (const [name, src] of Object.entries(step.inputs)) {
      const from = results.get(src.from);
      const t = from?.[src.name];
      if (!t) throw new ChainError(`step ${i} (${step.modelId}) input ${name}: ${src.from} gave no ${src.name}`);
      feeds[name] = (src.transforms ?? []).reduce(applyTransform, t);
    }
    last = await run(step.modelId, feeds);
    results.set(step.modelId, last);
  }
  return last;
}

// What simulated devices feed their model: inputs like the reference set's.
import type { Feeds } from '../runtime/onnx-session.ts';
import { seededRandom } from '../server/bundles/golden-vectors.ts';
import type { TensorJson } from '../shared/messages.ts';
import { decodeTensor } from '../shared/tensor-codec.ts';

/** a built-in model, or named input tensors to cycle through (a real bundle's health-check inputs) */
export type ModelKind = 'tiny' | 'digits' | { inputs: Record<string, TensorJson>[] };

export async function workloadInputs(model: ModelKind): Promise<(i: number, n: number) => Feeds> {
  if (typeof model === 'object') {
    const feeds: Feeds[] = model.inputs.map((set) => Object.fromEntries(Object.entries(set).map(([name, t]) => {
      const { dtype, dims, data } = decodeTensor(t);
      return [name, { data, dims, type: dtype }];
    })));
    if (feeds.length === 0) throw new Error('workload: no inputs to cycle through');
    return (i, n) => feeds[(i * 7919 + n) % feeds.length];
  }
  if (model === 'digits') {
    const { buildDigitsModel, DIGITS_INPUT } = await import('../server/training/digits.ts');
    const { reference } = await buildDigitsModel();
    const [count, pixels] = reference.shape;
    return (i, n) => {
      const k = (i * 7919 + n) % count;
      return { [DIGITS_INPUT]: { data: reference.inputs.subarray(k * pixels, (k + 1) * pixels), dims: [1, pixels] } };
    };
  }
  return (i, n) => {
    const rand = seededRandom(i * 100_003 + n);
    return { x: { data: Float32Array.from({ length: 8 }, () => rand()), dims: [1, 8] } };
  };
}

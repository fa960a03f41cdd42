// What simulated devices feed their model: inputs like the reference set's.
import type { Feeds } from '../runtime/onnx-session.ts';
import { seededRandom } from '../server/bundles/golden-vectors.ts';

export type ModelKind = 'tiny' | 'digits';

export async function workloadInputs(model: ModelKind): Promise<(i: number, n: number) => Feeds> {
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

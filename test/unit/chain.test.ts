// shared/chain.ts: the transforms between the models of a chain, exact values, and the errors a chain
// that does not fit its set or its tensors gets.
import { describe, expect, it } from 'vitest';
import { applyTransform, ChainError, checkChain, runChain, type ChainTensor } from '../../shared/chain.ts';
import type { Chain } from '../../shared/messages.ts';

const t = (data: number[], dims: number[]): ChainTensor => ({ data: Float32Array.from(data), dims, type: 'float32' });
const vals = (x: ChainTensor) => Array.from(x.data as Float32Array);

describe('chain transforms', () => {
  it('affine, windows, last and reshape give exactly these values and dims', () => {
    expect(vals(applyTransform(t([1, 2, 3], [3]), { op: 'affine', mul: 0.1, add: 2 }))).toEqual([1, 2, 3].map((v) => Math.fround(v * 0.1 + 2)));
    // 5 frames of 2 values, windows of 3 frames, 1 apart: 3 windows
    const w = applyTransform(t([0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 1, 5, 2]), { op: 'windows', frame: 2, size: 3, stride: 1 });
    expect(w.dims).toEqual([3, 3, 2]);
    expect(vals(w)).toEqual([0, 1, 2, 3, 4, 5, 2, 3, 4, 5, 6, 7, 4, 5, 6, 7, 8, 9]);
    const stride2 = applyTransform(t([0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [10]), { op: 'windows', frame: 2, size: 2, stride: 2 });
    expect(stride2.dims).toEqual([2, 2, 2]);
    expect(vals(stride2)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    const last = applyTransform(t([1, 2, 3, 4, 5, 6], [3, 1, 2]), { op: 'last', rows: 2 });
    expect(last.dims).toEqual([2, 1, 2]);
    expect(vals(last)).toEqual([3, 4, 5, 6]);
    expect(applyTransform(t([1, 2, 3, 4, 5, 6], [3, 2]), { op: 'reshape', dims: [-1, 3, 1] }).dims).toEqual([2, 3, 1]);
  });

  it('refuses what does not fit, with a message that says why', () => {
    expect(() => applyTransform(t([1, 2, 3], [3]), { op: 'windows', frame: 2, size: 1, stride: 1 })).toThrow(/3 values are not whole frames of 2/);
    expect(() => applyTransform(t([1, 2, 3, 4], [4]), { op: 'windows', frame: 2, size: 3, stride: 1 })).toThrow(/2 frames, a window needs 3/);
    expect(() => applyTransform(t([1, 2], [2, 1]), { op: 'last', rows: 3 })).toThrow(/2 rows, 3 wanted/);
    expect(() => applyTransform(t([1, 2, 3], [3]), { op: 'reshape', dims: [2, -1] })).toThrow(ChainError);
    expect(() => applyTransform(t([1, 2, 3, 4], [4]), { op: 'reshape', dims: [-1, -1] })).toThrow(/at most one -1/);
  });
});

describe('chains', () => {
  const chain: Chain = { steps: [
    { modelId: 'a', inputs: { x: { from: 'input', name: 'audio' } } },
    { modelId: 'b', inputs: { y: { from: 'a', name: 'out', transforms: [{ op: 'affine', mul: 2, add: 0 }] } } },
  ] };

  it('runs each step on the transformed outputs of the one before; the outputs are the last step\'s', async () => {
    const calls: string[] = [];
    const out = await runChain(chain, { audio: t([1, 2], [2]) }, async (id, feeds) => {
      calls.push(`${id}:${Object.keys(feeds).join(',')}:${vals(Object.values(feeds)[0]).join(',')}`);
      return { out: t(vals(Object.values(feeds)[0]).map((v) => v + 1), [2]) };
    });
    expect(calls).toEqual(['a:x:1,2', 'b:y:4,6']);
    expect(vals(out.out)).toEqual([5, 7]);
  });

  it('a step reading a model outside the set, or one not run yet, is refused before anything runs', () => {
    expect(() => checkChain(chain, ['a'])).toThrow(/step 1 runs b, which is not in the set \(a\)/);
    const backwards: Chain = { steps: [{ modelId: 'b', inputs: { y: { from: 'a', name: 'out' } } }, { modelId: 'a', inputs: { x: { from: 'input', name: 'audio' } } }] };
    expect(() => checkChain(backwards, ['a', 'b'])).toThrow(/reads a, which no earlier step runs/);
  });

  it('an input the previous step did not give is a ChainError naming it', async () => {
    await expect(runChain(chain, { other: t([1], [1]) }, async () => ({ out: t([1], [1]) }))).rejects.toThrow(/step 0 \(a\) input x: input gave no audio/);
  });
});

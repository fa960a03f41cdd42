// shared/histogram.ts: the binning server and agent must agree on, bin by bin.
import { describe, expect, it } from 'vitest';
import { binArgmax, binIndex, binValues, emptyCounts } from '../../shared/histogram.ts';

describe('binValues', () => {
  const edges = [0, 1, 2];
  it.each([
    [-5, 0], [0, 1], [0.5, 1], [1, 2], [1.999, 2], [2, 3], [100, 3],
  ])('%d falls in bin %d (edges 0,1,2: below, [0,1), [1,2), at or above 2)', (x, bin) => {
    expect(binIndex(edges, x)).toBe(bin);
  });

  it('counts every element when maxSamples covers the tensor, and skips NaN', () => {
    const counts = [0, 0, 0, 0];
    expect(binValues(edges, Float32Array.from([-1, 0.5, 1.5, 3, NaN]), counts)).toBe(4);
    expect(counts).toEqual([1, 1, 1, 1]);
  });

  it('samples at most maxSamples elements, strided, and the phase moves the positions', () => {
    const data = Float32Array.from({ length: 784 }, (_, i) => i);
    const a = [0, 0, 0, 0], b = [0, 0, 0, 0];
    const n = binValues([100, 400, 700], data, a, 32, 0);
    expect(n).toBeLessThanOrEqual(32);
    expect(n).toBeGreaterThan(28);
    binValues([100, 400, 700], data, b, 32, 7);
    expect(a.reduce((x, y) => x + y)).toBe(n);
    // over all phases of the stride every position is counted exactly once
    const all = [0, 0, 0, 0];
    for (let p = 0; p < Math.ceil(784 / 32); p++) binValues([100, 400, 700], data, all, 32, p);
    expect(all).toEqual([100, 300, 300, 84]);
  });

  it('accepts bigint data', () => {
    const counts = [0, 0, 0, 0];
    binValues(edges, BigInt64Array.from([0n, 5n]), counts);
    expect(counts).toEqual([0, 1, 0, 1]);
  });
});

describe('binArgmax', () => {
  it('counts the index of the largest element of each row along the last axis', () => {
    const counts = [0, 0, 0];
    expect(binArgmax(Float32Array.from([0.1, 0.7, 0.2, 0.9, 0.05, 0.05]), [2, 3], counts)).toBe(2);
    expect(counts).toEqual([1, 1, 0]);
  });

  it('drops indexes beyond the baseline counts', () => {
    const counts = [0, 0];
    binArgmax(Float32Array.from([0, 0, 1]), [1, 3], counts);
    expect(counts).toEqual([0, 0]);
  });

  it('emptyCounts follows the kind', () => {
    expect(emptyCounts({ kind: 'values', edges: [1, 2], counts: [] })).toEqual([0, 0, 0]);
    expect(emptyCounts({ kind: 'argmax', edges: [], counts: [5, 5, 5, 5] })).toEqual([0, 0, 0, 0]);
  });
});

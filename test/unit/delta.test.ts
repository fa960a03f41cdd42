// Delta bundles: the format rebuilds the target byte for byte, the ONNX-aware builder sends only the
// tensors that changed, and every kind of damage is refused with its own kind (never a wrong artifact).
import { describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { applyDelta, DeltaError, readDeltaHeader } from '../../shared/delta.ts';
import { buildDelta, genericDelta, modelAwareDelta } from '../../server/bundles/delta-builder.ts';
import { tensorRanges } from '../../server/onnx/tensor-ranges.ts';
import { exportMlpToOnnx } from '../../server/training/digits.ts';
import { initMlp, type MlpWeights } from '../../server/training/mlp.ts';
import { seededRandom } from '../../server/bundles/golden-vectors.ts';

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const target = (b: Uint8Array) => ({ sha256: sha(b), length: b.byteLength });
const meta = { seed: 1, heldOutAccuracy: 0.9 };

function mlp(seed: number): MlpWeights { return initMlp(256, 128, 10, seed); }
function withHead(w: MlpWeights, seed: number): MlpWeights {
  const r = seededRandom(seed);
  return { ...w, w2: w.w2.map((v) => v + (r() - 0.5) * 0.1), b2: w.b2.map((v) => v + (r() - 0.5) * 0.1) };
}

describe('delta format', () => {
  it('a generic delta rebuilds a binary with a segment inserted and one removed, exactly, in a fraction of its size', () => {
    const r = seededRandom(3);
    const a = Uint8Array.from({ length: 200_000 }, () => Math.floor(r() * 256));
    const b = new Uint8Array([...a.subarray(0, 50_000), ...Uint8Array.from({ length: 1000 }, () => Math.floor(r() * 256)), ...a.subarray(50_000, 120_000), ...a.subarray(130_000)]);
    const { delta } = genericDelta(a, b);
    expect(Buffer.from(applyDelta(a, delta, target(b))).equals(Buffer.from(b))).toBe(true);
    expect(delta.byteLength).toBeLessThan(1200); // the 1,000 new bytes, three copies, the header
    expect(readDeltaHeader(delta)).toEqual({ baseLength: a.byteLength, baseSha256: sha(a), targetLength: b.byteLength, targetSha256: sha(b) });
  });

  it('finds the four initializers of the MLP export at their byte ranges', () => {
    const bytes = exportMlpToOnnx(mlp(1), meta);
    const ranges = tensorRanges(bytes);
    expect(ranges.map((t) => [t.key, t.end - t.start])).toEqual([['fc1.weight', 256 * 128 * 4], ['fc1.bias', 128 * 4], ['fc2.weight', 128 * 10 * 4], ['fc2.bias', 10 * 4]]);
    const w1 = mlp(1).w1; // [in][hidden], exported transposed: element [h][i] first is w1[0]
    expect(new Float32Array(bytes.slice(ranges[0].start, ranges[0].start + 4).buffer)[0]).toBe(w1[0]);
  });

  it('only the classifier head changed: the ONNX-aware delta copies the two tensors of the body, sends the two of the head as differences, and is under 10% of the artifact', () => {
    const w = mlp(1);
    const a = exportMlpToOnnx(w, meta), b = exportMlpToOnnx(withHead(w, 9), meta);
    const aware = modelAwareDelta(a, b)!;
    expect(aware.stats.tensors).toEqual({ unchanged: 2, diffed: 2, other: 0 });
    expect(Buffer.from(applyDelta(a, aware.delta, target(b))).equals(Buffer.from(b))).toBe(true);
    expect(aware.delta.byteLength / b.byteLength).toBeLessThan(0.1);
    expect(buildDelta(a, b).delta.byteLength).toBeLessThanOrEqual(aware.delta.byteLength);
  });

  it('every weight moved a little: float differences go byte plane by byte plane, exact, and smaller than the generic diff', () => {
    const w = mlp(3), r = seededRandom(8);
    const moved = (a: Float32Array) => a.map((v) => v + v * 0.001 * (r() * 2 - 1) + 1e-5 * (r() * 2 - 1)); // (biases start at 0)
    const a = exportMlpToOnnx(w, meta), b = exportMlpToOnnx({ ...w, w1: moved(w.w1), b1: moved(w.b1), w2: moved(w.w2), b2: moved(w.b2) }, meta);
    const aware = modelAwareDelta(a, b)!, generic = genericDelta(a, b);
    expect(aware.stats.tensors).toEqual({ unchanged: 0, diffed: 4, other: 0 });
    expect(Buffer.from(applyDelta(a, aware.delta, target(b))).equals(Buffer.from(b))).toBe(true);
    expect(aware.delta.byteLength).toBeLessThan(0.8 * generic.delta.byteLength);
  });

  it('bytes that are not ONNX: no model-aware delta, the generic one is used and still exact', () => {
    const a = new Uint8Array(5000).fill(7), b = new Uint8Array(6000).fill(7);
    expect(() => tensorRanges(a)).toThrow();
    expect(modelAwareDelta(a, b)).toBeNull();
    const built = buildDelta(a, b);
    expect(built.stats.kind).toBe('generic');
    expect(Buffer.from(applyDelta(a, built.delta, target(b))).equals(Buffer.from(b))).toBe(true);
  });

  it('refuses a changed base, a damaged or truncated delta, and a delta for another target, each with its kind', () => {
    const w = mlp(2);
    const a = exportMlpToOnnx(w, meta), b = exportMlpToOnnx(withHead(w, 4), meta);
    const { delta } = buildDelta(a, b);
    const kind = (f: () => unknown) => { try { f(); return 'none'; } catch (err) { expect(err).toBeInstanceOf(DeltaError); return (err as DeltaError).kind; } };
    const changedBase = Uint8Array.from(a); changedBase[100] ^= 1;
    expect(kind(() => applyDelta(changedBase, delta, target(b)))).toBe('base');
    expect(kind(() => applyDelta(a.subarray(1), delta, target(b)))).toBe('base');
    expect(kind(() => applyDelta(a, delta.subarray(0, delta.byteLength - 10), target(b)))).toBe('corrupt');
    expect(kind(() => applyDelta(a, delta.subarray(0, 40), target(b)))).toBe('corrupt');
    expect(kind(() => applyDelta(a, delta, target(a)))).toBe('corrupt');
    // a flipped bit in the compressed operations: refused one way or another, never returned
    let refused = 0;
    for (let i = 84; i < delta.byteLength; i += Math.max(1, Math.floor((delta.byteLength - 84) / 40))) {
      const bad = Uint8Array.from(delta); bad[i] ^= 0x10;
      const k = kind(() => applyDelta(a, bad, target(b)));
      expect(['corrupt', 'mismatch']).toContain(k);
      refused++;
    }
    expect(refused).toBeGreaterThanOrEqual(40);
  });
});

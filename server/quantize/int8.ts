// Symmetric int8 quantization of one float tensor, per tensor or per slice along one axis.

export interface Int8Weight {
  q: Int8Array;
  /** one scale per slice along the axis (a single one per tensor). */
  scales: Float32Array;
  /** RMS quantization error relative to the weight's RMS. */
  relErr: number;
}

/** scale = max|w| / 127 per group, q = round(w / scale) in [-127, 127]. axis null = one group. */
export function quantizeSymmetric(w: Float32Array, dims: number[], axis: number | null): Int8Weight {
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

/**
 * Per tensor, or per slice along `axis` when that cuts the error by at least 10% ('auto'),
 * always ('always'), or never.
 */
export function chooseQuantization(
  w: Float32Array, dims: number[], axis: number, mode: 'auto' | 'always' | 'never',
): Int8Weight & { perChannel: boolean } {
  const perTensor = quantizeSymmetric(w, dims, null);
  if (mode === 'never' || !(dims[axis] > 1)) return { ...perTensor, perChannel: false };
  const pc = quantizeSymmetric(w, dims, axis);
  if (mode === 'always' || pc.relErr < 0.9 * perTensor.relErr) return { ...pc, perChannel: true };
  return { ...perTensor, perChannel: false };
}

/** Per tensor, or per slice along the axis (any of them) that gives the least error, as chooseQuantization decides. */
export function chooseBestAxis(
  w: Float32Array, dims: number[], mode: 'auto' | 'always' | 'never',
): Int8Weight & { perChannel: boolean; axis: number } {
  let best: (Int8Weight & { perChannel: boolean; axis: number }) | undefined;
  for (let axis = 0; axis < Math.max(1, dims.length); axis++) {
    const q = { ...chooseQuantization(w, dims, axis, mode), axis };
    if (!best || q.relErr < best.relErr) best = q;
  }
  return best!;
}

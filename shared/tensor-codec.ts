// Tensors on the wire (golden vectors, reference inputs) as little-endian bytes in base64.
import { b64 } from './crypto.ts';
import type { TensorDType, TensorJson } from './messages.ts';

export type TypedData = Float32Array | Int32Array | BigInt64Array | Uint8Array | Int8Array;

const CTORS = {
  float32: Float32Array, int32: Int32Array, int64: BigInt64Array, uint8: Uint8Array, int8: Int8Array, bool: Uint8Array,
} as const;

export function elementCount(dims: readonly number[]): number {
  return dims.reduce((a, b) => a * b, 1);
}

export function encodeTensor(dtype: TensorDType, dims: readonly number[], data: TypedData): TensorJson {
  if (data.length !== elementCount(dims)) throw new Error(`tensor data has ${data.length} elements, dims ${dims.join('x')} need ${elementCount(dims)}`);
  return { dtype, dims: [...dims], data: b64.encode(new Uint8Array(data.buffer, data.byteOffset, data.byteLength)) };
}

export function decodeTensor(t: TensorJson): { dtype: TensorDType; dims: number[]; data: TypedData } {
  const Ctor = CTORS[t.dtype];
  const bytes = b64.decode(t.data);
  const n = elementCount(t.dims);
  if (bytes.byteLength !== n * Ctor.BYTES_PER_ELEMENT) {
    throw new Error(`tensor of ${t.dtype} ${t.dims.join('x')} needs ${n * Ctor.BYTES_PER_ELEMENT} bytes, has ${bytes.byteLength}`);
  }
  const copy = new Uint8Array(bytes); // aligned copy
  return { dtype: t.dtype, dims: t.dims, data: new Ctor(copy.buffer, 0, n) };
}

/** Largest violation of |a - e| <= atol + rtol * |e| over all elements; <= 0 means within tolerance. */
export function worstToleranceExcess(actual: ArrayLike<number | bigint>, expected: ArrayLike<number | bigint>, atol: number, rtol: number): number {
  if (actual.length !== expected.length) return Infinity;
  let worst = -Infinity;
  for (let i = 0; i < actual.length; i++) {
    const a = Number(actual[i]), e = Number(expected[i]);
    if (!Number.isFinite(a)) return Infinity;
    const excess = Math.abs(a - e) - (atol + rtol * Math.abs(e));
    if (excess > worst) worst = excess;
  }
  return actual.length === 0 ? 0 : worst;
}

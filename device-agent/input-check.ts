// Caller errors are not model errors: an input whose name, dtype or shape does not match the signed
// manifest's io signature is refused before it reaches the model, so it never counts against a model on
// probation (nor as a model error in telemetry). Dimensions the manifest names symbolically ('N') or
// leaves open (null) take any size; fixed ones must match exactly.
import type { IoSpec } from '../shared/messages.ts';
import type { Feeds, NamedTensor } from '../runtime/onnx-session.ts';

export type InputMismatchKind = 'INPUT_NAME' | 'INPUT_DTYPE' | 'INPUT_SHAPE';

export class InputMismatch extends Error {
  readonly code = 'INPUT_MISMATCH';
  constructor(readonly kind: InputMismatchKind, message: string) {
    super(message);
    this.name = 'InputMismatch';
  }
}

function dtypeOf(t: NamedTensor): string {
  if (t.type) return t.type;
  const d = t.data;
  if (d instanceof Int32Array) return 'int32';
  if (d instanceof BigInt64Array) return 'int64';
  if (d instanceof Uint8Array) return 'uint8';
  if (d instanceof Int8Array) return 'int8';
  return 'float32'; // Float32Array, or a plain array (runtime/onnx-session.ts reads it as float32)
}

/** Throws InputMismatch unless `feeds` has exactly the manifest's inputs, with their dtypes and shapes. */
export function checkFeeds(feeds: Feeds, inputs: readonly IoSpec[]): void {
  const expected = new Set(inputs.map((i) => i.name));
  for (const name of Object.keys(feeds)) {
    if (!expected.has(name)) throw new InputMismatch('INPUT_NAME', `unknown input "${name}"; the model takes ${[...expected].join(', ')}`);
  }
  for (const spec of inputs) {
    const t = feeds[spec.name];
    if (!t) throw new InputMismatch('INPUT_NAME', `missing input "${spec.name}"`);
    const dtype = dtypeOf(t);
    if (spec.type !== 'unknown' && dtype !== spec.type) throw new InputMismatch('INPUT_DTYPE', `input "${spec.name}" is ${dtype}, the model takes ${spec.type}`);
    const want = `[${spec.shape.map((d) => d ?? '?').join(', ')}]`;
    if (!Array.isArray(t.dims) || t.dims.length !== spec.shape.length) throw new InputMismatch('INPUT_SHAPE', `input "${spec.name}" has shape [${t.dims?.join(', ')}], the model takes ${want}`);
    for (const [i, d] of spec.shape.entries()) {
      const got = t.dims[i];
      if (!Number.isInteger(got) || got < 0 || (typeof d === 'number' && d >= 0 && got !== d)) {
        throw new InputMismatch('INPUT_SHAPE', `input "${spec.name}" has shape [${t.dims.join(', ')}], the model takes ${want}`);
      }
    }
    const elements = t.dims.reduce((a, b) => a * b, 1);
    if (t.data.length !== elements) throw new InputMismatch('INPUT_SHAPE', `input "${spec.name}" has ${t.data.length} values for shape [${t.dims.join(', ')}] (${elements})`);
  }
}

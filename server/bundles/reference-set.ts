// The reference set as the API receives it (named, batched tensors) turned into what the accuracy
// gate runs: one float input, samples back to back.
import { decodeTensor } from '../../shared/tensor-codec.ts';
import type { IoSpec, TensorJson } from '../../shared/messages.ts';
import { AppError } from '../errors.ts';
import type { GateOptions, GateReference } from '../quantize/accuracy-gate.ts';

export function referenceToGateSet(ref: { inputs: Record<string, TensorJson>; labels?: number[] }, outputs: IoSpec[]): { reference: GateReference; opts: GateOptions } {
  const names = Object.keys(ref.inputs);
  if (names.length !== 1) {
    throw new AppError('FLEET_ERR_GATE_UNSUPPORTED', `the accuracy gate runs single-input models; this one has ${names.length} inputs: push it with quantize: "none"`, 422);
  }
  const t = decodeReferenceTensor(names[0], ref.inputs[names[0]]);
  if (t.dtype !== 'float32') throw new AppError('FLEET_ERR_GATE_UNSUPPORTED', `reference.inputs.${names[0]} is ${t.dtype}; the accuracy gate needs float32 inputs`, 422);
  return {
    reference: { inputs: t.data as Float32Array, shape: t.dims, labels: ref.labels },
    opts: { inputName: names[0], outputName: outputs[0]?.name },
  };
}

export function decodeReferenceTensor(name: string, t: TensorJson) {
  try {
    return decodeTensor(t);
  } catch (err) {
    throw new AppError('FLEET_ERR_BAD_REFERENCE', `reference.inputs.${name}: ${(err as Error).message}`, 400);
  }
}

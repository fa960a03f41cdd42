// Samples a push brings (shared/samples.ts), checked against the model's signature before any of them
// is run, and the older batched reference set turned into samples. Every refusal names the sample, the
// input and the dimension, so an owner can fix the file without guessing.
import { z } from 'zod';
import type { TensorDType, TensorJson } from '../../shared/messages.ts';
import { MAX_SAMPLES, type Sample } from '../../shared/samples.ts';
import { decodeTensor, elementCount, encodeTensor, type TypedData } from '../../shared/tensor-codec.ts';
import { AppError } from '../errors.ts';
import type { IoSpec } from '../onnx/types.ts';

import { ReferenceSet } from '../../shared/api/bundle-request.ts';
export { ReferenceSet };

export interface Decoded { dtype: TensorDType; dims: number[]; data: TypedData }
/** A checked sample with its tensors decoded once. */
export interface RunSample { inputs: Record<string, Decoded>; label?: number }

const bad = (message: string) => new AppError('FLEET_ERR_BAD_SAMPLES', message, 400);

/** Slice a batched reference set along its first dimension into one sample per row, each keeping dim 0 = 1. */
export function referenceToSamples(ref: ReferenceSet, inputs: IoSpec[]): Sample[] {
  checkNames('reference.inputs', Object.keys(ref.inputs), inputs);
  const decoded = Object.entries(ref.inputs).map(([name, t]) => {
    try {
      return [name, decodeTensor(t)] as const;
    } catch (err) {
      throw bad(`reference.inputs.${name}: ${(err as Error).message}`);
    }
  });
  for (const [name, d] of decoded) {
    if (d.dims.length === 0) throw bad(`reference.inputs.${name} is a scalar: a batched reference set needs the sample index as its first dimension; send samples (one entry per sample, scalars as dims []) instead`);
  }
  const counts = new Set(decoded.map(([, d]) => d.dims[0]));
  if (counts.size > 1) {
    const seen = decoded.map(([name, d]) => `${name}: ${d.dims[0]}`).join(', ');
    throw bad(`reference inputs disagree on the first dimension (${seen}): a batched reference set must be batched on the first dimension of every input; send samples (one entry per sample, each tensor with its own dims) instead`);
  }
  const n = decoded.length ? decoded[0][1].dims[0] : 0;
  if (!n) throw bad('reference set is empty');
  if (n > MAX_SAMPLES) throw bad(`reference set has ${n} samples, at most ${MAX_SAMPLES} are taken`);
  if (ref.labels && ref.labels.length !== n) throw bad(`reference has ${n} samples but ${ref.labels.length} labels`);
  return Array.from({ length: n }, (_, i) => ({
    inputs: Object.fromEntries(decoded.map(([name, d]) => {
      const per = elementCount(d.dims.slice(1));
      return [name, encodeTensor(d.dtype, [1, ...d.dims.slice(1)], d.data.slice(i * per, (i + 1) * per) as TypedData)];
    })),
    ...(ref.labels ? { label: ref.labels[i] } : {}),
  }));
}

/**
 * Check every sample against the model's signature: exactly the model's inputs, each with the
 * input's element type, rank and fixed dims; expected outputs named after model outputs; labels only
 * when an output can be read as classes, and below their count when it is fixed.
 */
export function checkSamples(samples: Sample[], io: { inputs: IoSpec[]; outputs: IoSpec[] }, labelOutput: IoSpec | null): RunSample[] {
  const outputNames = new Set(io.outputs.map((o) => o.name));
  const classes = labelOutput ? labelOutput.shape[labelOutput.shape.length - 1] : null;
  return samples.map((s, i) => {
    const at = `samples[${i}]`;
    checkNames(`${at}.inputs`, Object.keys(s.inputs), io.inputs);
    const inputs: Record<string, Decoded> = {};
    for (const spec of io.inputs) {
      inputs[spec.name] = checkTensor(`${at}.inputs.${spec.name}`, s.inputs[spec.name], spec);
    }
    for (const name of Object.keys(s.outputs ?? {})) {
      if (!outputNames.has(name)) throw bad(`${at}.outputs.${name} is not an output of the model (outputs: ${[...outputNames].join(', ')})`);
    }
    if (s.label !== undefined) {
      if (!labelOutput) throw bad(`${at}.label: no output of the model is read as classes (a float output [N, classes]); drop the labels or name a classifier output in gate.outputs`);
      if (typeof classes === 'number' && classes > 0 && s.label >= classes) throw bad(`${at}.label ${s.label}: output ${labelOutput.name} has ${classes} classes (0-${classes - 1})`);
    }
    return { inputs, ...(s.label !== undefined ? { label: s.label } : {}) };
  });
}

/** Exactly the model's inputs, by name. */
function checkNames(at: string, given: string[], inputs: IoSpec[]): void {
  const names = inputs.map((i) => i.name);
  const extra = given.find((n) => !names.includes(n));
  if (extra !== undefined) throw bad(`${at}.${extra} is not an input of the model (inputs: ${names.join(', ')})`);
  const missing = names.find((n) => !given.includes(n));
  if (missing !== undefined) throw bad(`${at} lacks model input ${missing} (inputs: ${names.join(', ')})`);
}

function checkTensor(at: string, t: TensorJson, spec: IoSpec): Decoded {
  if (spec.type !== t.dtype) throw bad(`${at} is ${t.dtype}, the model input ${spec.name} is ${spec.type}`);
  let d: Decoded;
  try {
    d = decodeTensor(t);
  } catch (err) {
    throw bad(`${at}: ${(err as Error).message}`);
  }
  // An unknown rank is reported as []; a scalar input is also []: only a known, non-zero rank is checked.
  if (spec.shape.length === 0) return d;
  const want = `[${spec.shape.map((x) => (typeof x === 'number' ? x : x ?? '?')).join(', ')}]`;
  if (d.dims.length !== spec.shape.length) throw bad(`${at} has rank ${d.dims.length} (dims [${d.dims.join(', ')}]), the model input ${spec.name} has rank ${spec.shape.length} ${want}`);
  spec.shape.forEach((fixed, k) => {
    if (typeof fixed === 'number' && fixed > 0 && d.dims[k] !== fixed) {
      throw bad(`${at} dim ${k} is ${d.dims[k]}, the model fixes it at ${fixed} ${want}`);
    }
  });
  return d;
}

// Samples a model's owner sends with a push: per-sample named inputs, each tensor with its own dims
// (scalars as dims []), an optional class label and optional expected outputs. The health-check
// vectors, the quantization gate and the drift baseline are all made from them. The older batched
// reference set ({inputs: {name: batched tensor}, labels?}) is turned into samples by slicing the
// first dimension (referenceToSamples in server/bundles/samples.ts).
import { z } from 'zod';
import { TensorJson } from './messages.ts';

export const MAX_SAMPLES = 4096;

export const Sample = z.object({
  inputs: z.record(z.string(), TensorJson),
  label: z.number().int().nonnegative().optional(),
  outputs: z.record(z.string(), TensorJson).optional(),
}).strict();
export type Sample = z.infer<typeof Sample>;

/** The samples file format (`fleetctl push --samples samples.json`). */
export const SampleSet = z.object({ samples: z.array(Sample).min(1).max(MAX_SAMPLES) }).strict();
export type SampleSet = z.infer<typeof SampleSet>;

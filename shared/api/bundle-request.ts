// What a push sends to build a bundle (POST /v1/models/:modelId/bundles): the accuracy gate's
// thresholds, samples or a batched reference set, health-check settings. The server's builder
// (server/bundles/bundle-builder.ts) and gate (server/quantize/accuracy-gate.ts) parse with these.
import { z } from 'zod';
import { Sha256Hex } from '../ids.ts';
import { TensorJson } from '../messages.ts';
import { MAX_SAMPLES, Sample } from '../samples.ts';

export const OutputKind = z.enum(['classifier', 'fidelity']);
export type OutputKind = z.infer<typeof OutputKind>;

export const GateThresholds = z.object({
  /** minimum fraction of positions where the candidate's top-1 equals the float model's (classifier outputs). */
  minAgreement: z.number().min(0).max(1).default(0.99),
  /** maximum overall accuracy loss, in percentage points (classifier output with labels). */
  maxAccuracyDrop: z.number().min(0).default(1),
  /** maximum accuracy loss on any single class, in percentage points. */
  maxWorstClassDrop: z.number().min(0).default(3),
  /** minimum signal-to-quantization-noise ratio in dB (fidelity outputs). */
  minSqnrDb: z.number().default(20),
  /** minimum cosine similarity between float and quantized output (fidelity outputs). */
  minCosine: z.number().min(-1).max(1).default(0.99),
});
export type GateThresholds = z.input<typeof GateThresholds>;

/** What a push may say about its gate: thresholds, and how to read an output (overriding the default). */
export const GateRequest = GateThresholds.partial().extend({
  outputs: z.record(z.string(), OutputKind).optional(),
}).strict();
export type GateRequest = z.input<typeof GateRequest>;

/** The older batched form: the first dimension of every tensor is the sample index. */
export const ReferenceSet = z.object({
  inputs: z.record(z.string(), TensorJson),
  labels: z.array(z.number().int().nonnegative()).optional(),
}).strict();
export type ReferenceSet = z.infer<typeof ReferenceSet>;

export const BundleRequest = z.object({
  uploadSha256: Sha256Hex,
  quantize: z.enum(['int8', 'none']).default('int8'),
  /** ship the float model when the quantized one fails its gate, instead of refusing the push */
  allowFloatFallback: z.boolean().default(false),
  /** thresholds, and how to read outputs ({"<output>": "classifier" | "fidelity"}) */
  gate: GateRequest.optional(),
  /** per-sample inputs (each tensor its own dims), optional label and expected outputs */
  samples: z.array(Sample).min(1).max(MAX_SAMPLES).optional(),
  /** the older batched form, sliced along the first dim into samples */
  reference: ReferenceSet.optional(),
  hardwareTargets: z.array(z.string().min(1).max(64)).max(64).default([]),
  healthCheck: z.object({
    vectors: z.number().int().min(1).max(16).default(4),
    atol: z.number().nonnegative().default(1e-4),
    rtol: z.number().nonnegative().default(1e-3),
    latencyBudgetMs: z.number().positive().optional(),
  }).strict().default({ vectors: 4, atol: 1e-4, rtol: 1e-3 }),
  expiresInDays: z.number().int().min(1).max(3650).optional(),
  lineage: z.object({
    owner: z.string().max(128).optional(),
    trainingDataSha256: Sha256Hex.optional(),
    metrics: z.record(z.string(), z.number()).optional(),
  }).strict().optional(),
}).strict();
export type BundleRequest = z.input<typeof BundleRequest>;

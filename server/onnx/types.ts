// Plain-object shapes of the onnx.proto messages the tooling touches (what protobufjs
// toObject/fromObject produce and accept, with int64 as number), plus the zod schemas for
// the model facts that cross the API boundary (IoSpec, ModelInfo).
import { z } from 'zod';

export interface OnnxTensor {
  name?: string;
  dims?: number[];
  data_type?: number;
  raw_data?: Uint8Array;
  float_data?: number[];
  int32_data?: number[];
  int64_data?: number[];
  double_data?: number[];
  uint64_data?: number[];
  string_data?: Uint8Array[];
  data_location?: number;
  external_data?: { key?: string; value?: string }[];
  doc_string?: string;
}

export interface OnnxAttribute {
  name: string;
  type: number;
  f?: number;
  i?: number;
  s?: Uint8Array;
  t?: OnnxTensor;
  g?: OnnxGraph;
  floats?: number[];
  ints?: number[];
  strings?: Uint8Array[];
  tensors?: OnnxTensor[];
  graphs?: OnnxGraph[];
}

export interface OnnxNode {
  input: string[];
  output: string[];
  name?: string;
  op_type: string;
  domain?: string;
  attribute?: OnnxAttribute[];
  doc_string?: string;
}

export interface OnnxDim { dim_value?: number; dim_param?: string }

export interface OnnxType {
  tensor_type?: { elem_type?: number; shape?: { dim?: OnnxDim[] } };
  sequence_type?: { elem_type?: OnnxType };
  denotation?: string;
}

export interface OnnxValueInfo { name: string; type?: OnnxType; doc_string?: string }

export interface OnnxGraph {
  name?: string;
  node: OnnxNode[];
  initializer?: OnnxTensor[];
  input: OnnxValueInfo[];
  output: OnnxValueInfo[];
  value_info?: OnnxValueInfo[];
  sparse_initializer?: unknown[];
  doc_string?: string;
}

export interface OnnxOpset { domain?: string; version: number }

export interface OnnxModel {
  ir_version?: number;
  opset_import?: OnnxOpset[];
  producer_name?: string;
  producer_version?: string;
  domain?: string;
  model_version?: number;
  doc_string?: string;
  graph?: OnnxGraph;
  metadata_props?: { key?: string; value?: string }[];
}

/** Element types by their onnxruntime-web names (the names device agents feed tensors with). */
export const ElemType = z.enum([
  'float32', 'uint8', 'int8', 'uint16', 'int16', 'int32', 'int64', 'string', 'bool',
  'float16', 'float64', 'uint32', 'uint64', 'bfloat16',
  // A value that is not a tensor (sequence, map, optional) or a tensor type this list lacks.
  'unknown',
]);
export type ElemType = z.infer<typeof ElemType>;

/**
 * One model input or output. shape entries: number = fixed, string = named dynamic dim
 * (for example 'N'), null = dynamic and unnamed. An unknown rank is reported as [].
 */
export const IoSpec = z.object({
  name: z.string().min(1),
  type: ElemType,
  shape: z.array(z.union([z.number().int().nonnegative(), z.string(), z.null()])),
});
export type IoSpec = z.infer<typeof IoSpec>;

export const OpsetSpec = z.object({ domain: z.string(), version: z.number().int() });
export type OpsetSpec = z.infer<typeof OpsetSpec>;

export const ModelInfo = z.object({
  irVersion: z.number().int(),
  /** opset of the default ('' / 'ai.onnx') domain. */
  opset: z.number().int(),
  opsets: z.array(OpsetSpec),
  producer: z.string(),
  inputs: z.array(IoSpec),
  outputs: z.array(IoSpec),
  /** sorted, unique, including ops inside If/Loop/Scan subgraphs; custom domains as 'domain:Op'. */
  opTypes: z.array(z.string()),
  /** nodes in the main graph and all subgraphs. */
  nodeCount: z.number().int(),
  /** bytes held by initializers (main graph and subgraphs) at their element size. */
  weightBytes: z.number().int(),
  hasSubgraphs: z.boolean(),
});
export type ModelInfo = z.infer<typeof ModelInfo>;

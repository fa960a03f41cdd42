// Plain-object shapes of the onnx.proto messages (what onnx-proto.ts decodes to and encodes from,
// keyed by .proto field names; int64 as number, or bigint beyond 2^53), plus the zod schemas for
// the model facts that cross the API boundary (IoSpec, ModelInfo).
import { z } from 'zod';

/** An int64 field: a number when it fits a double exactly, a bigint beyond 2^53 (onnx-proto.ts). */
export type Int64 = number | bigint;
export interface OnnxEntry { key?: string; value?: string }
/** Raw fields newer than the ONNX 1.20 schema, carried through decode/encode untouched. */
interface Unknowns { $unknown?: unknown[] }

export interface OnnxTensor extends Unknowns {
  name?: string;
  dims?: number[];
  data_type?: number;
  segment?: { begin?: Int64; end?: Int64 };
  raw_data?: Uint8Array;
  float_data?: number[];
  int32_data?: number[];
  int64_data?: Int64[];
  double_data?: number[];
  uint64_data?: Int64[];
  string_data?: Uint8Array[];
  data_location?: number;
  external_data?: OnnxEntry[];
  doc_string?: string;
  metadata_props?: OnnxEntry[];
}

export interface OnnxSparseTensor extends Unknowns { values?: OnnxTensor; indices?: OnnxTensor; dims?: number[] }

export interface OnnxAttribute extends Unknowns {
  name: string;
  ref_attr_name?: string;
  doc_string?: string;
  type: number;
  f?: number;
  i?: Int64;
  s?: Uint8Array;
  t?: OnnxTensor;
  g?: OnnxGraph;
  sparse_tensor?: OnnxSparseTensor;
  tp?: OnnxType;
  floats?: number[];
  ints?: Int64[];
  strings?: Uint8Array[];
  tensors?: OnnxTensor[];
  graphs?: OnnxGraph[];
  sparse_tensors?: OnnxSparseTensor[];
  type_protos?: OnnxType[];
}

export interface OnnxNode extends Unknowns {
  input: string[];
  output: string[];
  name?: string;
  op_type: string;
  domain?: string;
  overload?: string;
  attribute?: OnnxAttribute[];
  doc_string?: string;
  metadata_props?: OnnxEntry[];
  device_configurations?: unknown[];
}

export interface OnnxDim extends Unknowns { dim_value?: number; dim_param?: string; denotation?: string }

export interface OnnxType extends Unknowns {
  tensor_type?: { elem_type?: number; shape?: { dim?: OnnxDim[] } };
  sequence_type?: { elem_type?: OnnxType };
  map_type?: { key_type?: number; value_type?: OnnxType };
  optional_type?: { elem_type?: OnnxType };
  sparse_tensor_type?: { elem_type?: number; shape?: { dim?: OnnxDim[] } };
  denotation?: string;
}

export interface OnnxValueInfo extends Unknowns { name: string; type?: OnnxType; doc_string?: string; metadata_props?: OnnxEntry[] }

export interface OnnxGraph extends Unknowns {
  name?: string;
  node: OnnxNode[];
  initializer?: OnnxTensor[];
  sparse_initializer?: OnnxSparseTensor[];
  doc_string?: string;
  input: OnnxValueInfo[];
  output: OnnxValueInfo[];
  value_info?: OnnxValueInfo[];
  quantization_annotation?: unknown[];
  metadata_props?: OnnxEntry[];
}

export interface OnnxOpset extends Unknowns { domain?: string; version: number }

export interface OnnxFunction extends Unknowns {
  name?: string;
  input?: string[];
  output?: string[];
  attribute?: string[];
  attribute_proto?: OnnxAttribute[];
  node?: OnnxNode[];
  doc_string?: string;
  opset_import?: OnnxOpset[];
  domain?: string;
  overload?: string;
  value_info?: OnnxValueInfo[];
  metadata_props?: OnnxEntry[];
}

export interface OnnxModel extends Unknowns {
  ir_version?: number;
  opset_import?: OnnxOpset[];
  producer_name?: string;
  producer_version?: string;
  domain?: string;
  model_version?: number;
  doc_string?: string;
  graph?: OnnxGraph;
  metadata_props?: OnnxEntry[];
  training_info?: { initialization?: OnnxGraph; algorithm?: OnnxGraph; initialization_binding?: OnnxEntry[]; update_binding?: OnnxEntry[] }[];
  functions?: OnnxFunction[];
  configuration?: unknown[];
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
  /** bytes held by constant tensors (initializers, sparse initializers, Constant nodes; main graph and subgraphs) at their element size. */
  weightBytes: z.number().int(),
  hasSubgraphs: z.boolean(),
});
export type ModelInfo = z.infer<typeof ModelInfo>;

// Reads and writes ONNX with the full official schema (onnx-buf: the protoc-gen-es output of
// onnx.proto, ONNX 1.20, proto2) on @bufbuild/protobuf, and converts its messages to and from the
// plain snake_case objects the rest of the tooling uses (types.ts). The conversion is driven by the
// schema's own descriptors, so every field ONNX defines survives decode -> encode (functions,
// training_info, sparse initializers, map/optional/sequence types, ...), and fields newer than
// ONNX 1.20 survive too: @bufbuild keeps them as `$unknown` and the plain object carries them along.
//
// int64 fields come back as numbers when they fit a double exactly (|v| <= 2^53) and as bigint
// otherwise (Slice ends of INT64_MAX, hashes in int64_data), so nothing is rounded on the way back.
import { create, fromBinary, isFieldSet, toBinary, ScalarType, type DescField, type DescMessage } from '@bufbuild/protobuf';
import { ModelProtoSchema } from 'onnx-buf';
import type { OnnxModel } from './types.ts';

type Msg = Record<string, unknown> & { $unknown?: unknown[] };
type Plain = Record<string, unknown>;

const INT64_SCALARS = new Set<ScalarType>([
  ScalarType.INT64, ScalarType.UINT64, ScalarType.SINT64, ScalarType.FIXED64, ScalarType.SFIXED64,
]);

function isInt64(f: DescField): boolean {
  return (f.fieldKind === 'scalar' || (f.fieldKind === 'list' && f.listKind === 'scalar')) && INT64_SCALARS.has(f.scalar!);
}

function int64ToPlain(v: unknown): number | bigint {
  const b = typeof v === 'bigint' ? v : BigInt(v as string | number);
  return b >= BigInt(Number.MIN_SAFE_INTEGER) && b <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(b) : b;
}

function messageOf(f: DescField): DescMessage | undefined {
  if (f.fieldKind === 'message') return f.message;
  if (f.fieldKind === 'list' && f.listKind === 'message') return f.message;
  return undefined;
}

function valueToPlain(f: DescField, v: unknown): unknown {
  const sub = messageOf(f);
  if (sub) return toPlain(sub, v as Msg);
  if (isInt64(f)) return int64ToPlain(v);
  // bytes arrive as views into the input (a Buffer, when read from a file): own a plain copy.
  return v instanceof Uint8Array ? new Uint8Array(v) : v;
}

function valueToMessage(f: DescField, v: unknown): unknown {
  const sub = messageOf(f);
  if (sub) return toMessage(sub, v as Plain);
  return isInt64(f) ? BigInt(v as number | bigint | string) : v;
}

/** A @bufbuild message as a plain object keyed by the .proto field names; repeated fields are always arrays. */
function toPlain(desc: DescMessage, msg: Msg): Plain {
  const out: Plain = {};
  for (const f of desc.fields) {
    if (f.fieldKind === 'list') {
      out[f.name] = (msg[f.localName] as unknown[]).map((v) => valueToPlain(f, v));
    } else if (f.fieldKind === 'map') {
      const m = msg[f.localName] as Record<string, unknown>;
      out[f.name] = Object.fromEntries(Object.entries(m).map(([k, v]) => [k, valueToPlain(f as DescField, v)]));
    } else if (f.oneof) {
      const o = msg[f.oneof.localName] as { case?: string; value?: unknown };
      if (o.case === f.localName) out[f.name] = valueToPlain(f, o.value);
    } else if (isFieldSet(msg as never, f)) {
      out[f.name] = valueToPlain(f, msg[f.localName]);
    }
  }
  if (msg.$unknown?.length) out.$unknown = msg.$unknown;
  return out;
}

/** The reverse of toPlain; keys the schema does not define are ignored, except `$unknown` (raw fields). */
function toMessage(desc: DescMessage, plain: Plain): Msg {
  const init: Plain = {};
  for (const f of desc.fields) {
    const v = plain[f.name];
    if (v === undefined || v === null) continue;
    if (f.fieldKind === 'list') {
      init[f.localName] = (v as unknown[]).map((x) => valueToMessage(f, x));
    } else if (f.fieldKind === 'map') {
      init[f.localName] = Object.fromEntries(Object.entries(v as Plain).map(([k, x]) => [k, valueToMessage(f, x)]));
    } else if (f.oneof) {
      init[f.oneof.localName] = { case: f.localName, value: valueToMessage(f, v) };
    } else {
      init[f.localName] = valueToMessage(f, v);
    }
  }
  const msg = create(desc, init as never) as unknown as Msg;
  if (Array.isArray(plain.$unknown) && plain.$unknown.length) msg.$unknown = plain.$unknown;
  return msg;
}

/** Decodes a ModelProto (throws the protobuf reader's error on malformed bytes). */
export function decodeOnnx(bytes: Uint8Array): OnnxModel {
  const msg = fromBinary(ModelProtoSchema, bytes);
  return toPlain(ModelProtoSchema, msg as unknown as Msg) as unknown as OnnxModel;
}

export function encodeOnnx(m: OnnxModel): Uint8Array {
  const msg = toMessage(ModelProtoSchema, m as unknown as Plain);
  return toBinary(ModelProtoSchema, msg as never);
}

/** ONNX TensorProto.DataType values used here. */
export const DataType = {
  FLOAT: 1, UINT8: 2, INT8: 3, UINT16: 4, INT16: 5, INT32: 6, INT64: 7, STRING: 8, BOOL: 9,
  FLOAT16: 10, DOUBLE: 11, UINT32: 12, UINT64: 13, BFLOAT16: 16,
} as const;
/** AttributeProto.AttributeType values used here. */
export const AttrType = { FLOAT: 1, INT: 2, STRING: 3, TENSOR: 4, GRAPH: 5, FLOATS: 6, INTS: 7, STRINGS: 8, TENSORS: 9, GRAPHS: 10 } as const;

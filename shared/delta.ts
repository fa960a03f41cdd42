// Delta bundles (docs/agent.md "Delta updates"): the bytes of artifact B written as a sequence of
// operations on artifact A that a device already holds. Reconstruction is exact by construction: B's
// serialized bytes are the concatenation of what each operation produces, so the rebuilt file is checked
// with B's own signed length and SHA-256 and nothing new needs trusting. Who chooses the operations
// (a generic block matcher, or the ONNX-aware builder that picks them tensor by tensor:
// server/bundles/delta-builder.ts) does not matter to the device.
//
// Layout: "FLDELTA1" | base length (6 bytes BE) | base SHA-256 (32) | target length (6) | target SHA-256
// (32) | raw DEFLATE of the operations. Each operation is a tag byte and LEB128 varints:
//   0x01 COPY   off len        target gets base[off, off+len)
//   0x02 INSERT len bytes      target gets the literal bytes
//   0x03 ADD    off len bytes  target gets (base[off+i] + bytes[i]) mod 256: a tensor that changed a
//                              little differs from its old self by small numbers, which compress well
//   0x04 ADDW   off len w bytes the same, with the differences of elements `w` bytes wide stored byte
//                              plane by byte plane (every element's first byte, then every second...):
//                              a float's sign and exponent barely move, so those planes are near zero
import { createHash } from 'node:crypto';
import { deflateRawSync, inflateRawSync } from 'node:zlib';

export const DELTA_MAGIC = Buffer.from('FLDELTA1', 'latin1');
const HEADER = 8 + 6 + 32 + 6 + 32;
export const OP_COPY = 1;
export const OP_INSERT = 2;
export const OP_ADD = 3;
export const OP_ADD_PLANES = 4;

export type DeltaOp =
  | { op: 'copy'; off: number; len: number }
  | { op: 'insert'; bytes: Uint8Array }
  | { op: 'add'; off: number; diff: Uint8Array; width?: number };

/** Why a delta could not be used; the agent then downloads the full artifact. */
export class DeltaError extends Error {
  constructor(readonly kind: 'base' | 'corrupt' | 'mismatch', message: string) {
    super(message);
    this.name = 'DeltaError';
  }
}

export interface DeltaHeader { baseLength: number; baseSha256: string; targetLength: number; targetSha256: string }

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

/** Operations -> the delta file (the ops stream deflated at `level`). */
export function encodeDelta(base: Uint8Array, target: Uint8Array, ops: DeltaOp[], level = 9): Uint8Array {
  const parts: Buffer[] = [];
  const varint = (n: number) => {
    const out: number[] = [];
    while (n >= 0x80) { out.push((n % 0x80) | 0x80); n = Math.floor(n / 0x80); }
    out.push(n);
    return Buffer.from(out);
  };
  for (const o of ops) {
    if (o.op === 'copy') parts.push(Buffer.from([OP_COPY]), varint(o.off), varint(o.len));
    else if (o.op === 'insert') parts.push(Buffer.from([OP_INSERT]), varint(o.bytes.byteLength), Buffer.from(o.bytes.buffer, o.bytes.byteOffset, o.bytes.byteLength));
    else if (o.width && o.width > 1 && o.diff.byteLength % o.width === 0) parts.push(Buffer.from([OP_ADD_PLANES]), varint(o.off), varint(o.diff.byteLength), varint(o.width), toPlanes(o.diff, o.width));
    else parts.push(Buffer.from([OP_ADD]), varint(o.off), varint(o.diff.byteLength), Buffer.from(o.diff.buffer, o.diff.byteOffset, o.diff.byteLength));
  }
  const head = Buffer.alloc(HEADER);
  DELTA_MAGIC.copy(head, 0);
  head.writeUIntBE(base.byteLength, 8, 6);
  Buffer.from(sha(base), 'hex').copy(head, 14);
  head.writeUIntBE(target.byteLength, 46, 6);
  Buffer.from(sha(target), 'hex').copy(head, 52);
  return Buffer.concat([head, deflateRawSync(Buffer.concat(parts), { level })]);
}

function toPlanes(d: Uint8Array, w: number): Buffer {
  const n = d.byteLength / w, out = Buffer.allocUnsafe(d.byteLength);
  for (let e = 0; e < n; e++) for (let p = 0; p < w; p++) out[p * n + e] = d[e * w + p];
  return out;
}

export function readDeltaHeader(delta: Uint8Array): DeltaHeader {
  const d = Buffer.from(delta.buffer, delta.byteOffset, delta.byteLength);
  if (d.byteLength < HEADER || !d.subarray(0, 8).equals(DELTA_MAGIC)) throw new DeltaError('corrupt', 'not a delta (bad magic or too short)');
  return {
    baseLength: d.readUIntBE(8, 6), baseSha256: d.subarray(14, 46).toString('hex'),
    targetLength: d.readUIntBE(46, 6), targetSha256: d.subarray(52, 84).toString('hex'),
  };
}

/**
 * Rebuild the target from `base` and `delta`; the result has exactly `expect`'s length and SHA-256 or
 * this throws a DeltaError ('base': the base is not the one the delta was made from; 'corrupt': the
 * delta does not parse or points outside the base or target; 'mismatch': the rebuilt bytes differ).
 * Every read is bounds-checked, and the ops stream may not inflate past a bound set by the target size.
 */
export function applyDelta(base: Uint8Array, delta: Uint8Array, expect: { sha256: string; length: number }): Buffer {
  const h = readDeltaHeader(delta);
  if (h.targetLength !== expect.length || h.targetSha256 !== expect.sha256) throw new DeltaError('corrupt', 'the delta is for another target than the signed manifest names');
  if (base.byteLength !== h.baseLength || sha(base) !== h.baseSha256) throw new DeltaError('base', `the base artifact on this device (${base.byteLength} bytes) is not the one the delta was made from`);
  let ops: Buffer;
  try {
    ops = inflateRawSync(Buffer.from(delta.buffer, delta.byteOffset + HEADER, delta.byteLength - HEADER), { maxOutputLength: 4 * expect.length + (1 << 20) });
  } catch (err) {
    throw new DeltaError('corrupt', `the delta's operations do not inflate: ${(err as Error).message}`);
  }
  const out = Buffer.allocUnsafe(expect.length);
  let pos = 0, i = 0;
  const varint = (): number => {
    let n = 0, mul = 1;
    for (;;) {
      if (i >= ops.length || mul > 2 ** 49) throw new DeltaError('corrupt', 'truncated or oversized number in the delta');
      const b = ops[i++];
      n += (b & 0x7f) * mul;
      if (b < 0x80) return n;
      mul *= 0x80;
    }
  };
  const room = (len: number) => { if (len > expect.length - pos) throw new DeltaError('corrupt', 'the delta writes past the end of the target'); };
  const inBase = (off: number, len: number) => { if (off + len > base.byteLength) throw new DeltaError('corrupt', 'the delta reads past the end of the base'); };
  while (i < ops.length) {
    const tag = ops[i++];
    if (tag === OP_COPY) {
      const off = varint(), len = varint();
      room(len); inBase(off, len);
      out.set(base.subarray(off, off + len), pos);
      pos += len;
    } else if (tag === OP_INSERT) {
      const len = varint();
      room(len);
      if (i + len > ops.length) throw new DeltaError('corrupt', 'truncated literal in the delta');
      ops.copy(out, pos, i, i + len);
      i += len; pos += len;
    } else if (tag === OP_ADD) {
      const off = varint(), len = varint();
      room(len); inBase(off, len);
      if (i + len > ops.length) throw new DeltaError('corrupt', 'truncated difference in the delta');
      for (let k = 0; k < len; k++) out[pos + k] = (base[off + k] + ops[i + k]) & 0xff;
      i += len; pos += len;
    } else if (tag === OP_ADD_PLANES) {
      const off = varint(), len = varint(), w = varint();
      room(len); inBase(off, len);
      if (w < 2 || w > 16 || len % w !== 0) throw new DeltaError('corrupt', `bad element width ${w} for ${len} bytes in the delta`);
      if (i + len > ops.length) throw new DeltaError('corrupt', 'truncated difference in the delta');
      const n = len / w;
      for (let e = 0; e < n; e++) for (let p = 0; p < w; p++) out[pos + e * w + p] = (base[off + e * w + p] + ops[i + p * n + e]) & 0xff;
      i += len; pos += len;
    } else {
      throw new DeltaError('corrupt', `unknown operation ${tag} in the delta`);
    }
  }
  if (pos !== expect.length) throw new DeltaError('corrupt', `the delta builds ${pos} bytes, the manifest says ${expect.length}`);
  if (sha(out) !== expect.sha256) throw new DeltaError('mismatch', 'the rebuilt artifact\'s SHA-256 differs from the signed manifest');
  return out;
}

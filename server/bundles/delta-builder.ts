// Builds delta bundles A -> B (format: shared/delta.ts). Two ways to choose the operations:
//  - generic: rsync-style block matching over the whole file (copy what is found in A, insert the rest);
//  - model-aware: B is parsed as ONNX (server/onnx/tensor-ranges.ts) and each tensor's data is matched
//    by name with A's: unchanged tensors are copied from A, changed ones of the same size are sent as
//    a bytewise difference (small after compression when the change is small), the rest (graph,
//    names, tensors that changed size) goes through the generic matcher. A model that does not parse
//    is diffed generically as a whole.
// Both produce a file that rebuilds B exactly; the store uses the model-aware one when it can.
import { createHash } from 'node:crypto';
import { encodeDelta, type DeltaOp } from '../../shared/delta.ts';
import { tensorRanges, type TensorRange } from '../onnx/tensor-ranges.ts';

const BLOCK = 32;
/** bytes per element by ONNX data type (float, uint8, int8, uint16, int16, int32, int64, ..., float16, double, uint32, uint64, bfloat16) */
const ELEMENT_BYTES: Record<number, number> = { 1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 12: 4, 13: 8, 16: 2 };
const P = 0x01000193;
let PK = 1;
for (let k = 0; k < BLOCK - 1; k++) PK = Math.imul(PK, P);

function hashAt(b: Uint8Array, p: number): number {
  let h = 0;
  for (let k = 0; k < BLOCK; k++) h = (Math.imul(h, P) + b[p + k]) | 0;
  return h;
}

/** A's blocks at multiples of BLOCK, by rolling hash (first offset wins). */
export class BaseIndex {
  private readonly map = new Map<number, number>();
  constructor(readonly base: Uint8Array) {
    for (let p = 0; p + BLOCK <= base.byteLength; p += BLOCK) {
      const h = hashAt(base, p);
      if (!this.map.has(h)) this.map.set(h, p);
    }
  }
  get(h: number): number | undefined { return this.map.get(h); }
}

/** Generic diff of target[ts, te) against the whole base: copy matched runs, insert the rest. */
export function genericOps(index: BaseIndex, target: Uint8Array, ts: number, te: number, ops: DeltaOp[]): void {
  const base = index.base;
  let p = ts, lit = ts, h = te - ts >= BLOCK ? hashAt(target, ts) : 0;
  while (p + BLOCK <= te) {
    const cand = index.get(h);
    if (cand !== undefined && same(base, cand, target, p, BLOCK)) {
      let bo = cand, tp = p;
      while (tp > lit && bo > 0 && base[bo - 1] === target[tp - 1]) { bo--; tp--; }
      let len = p + BLOCK - tp;
      while (tp + len < te && bo + len < base.byteLength && base[bo + len] === target[tp + len]) len++;
      if (tp > lit) ops.push({ op: 'insert', bytes: target.subarray(lit, tp) });
      pushCopy(ops, bo, len);
      p = lit = tp + len;
      if (p + BLOCK <= te) h = hashAt(target, p);
      continue;
    }
    if (p + BLOCK < te) h = (Math.imul((h - Math.imul(target[p], PK)) | 0, P) + target[p + BLOCK]) | 0;
    p++;
  }
  if (te > lit) ops.push({ op: 'insert', bytes: target.subarray(lit, te) });
}

function same(a: Uint8Array, ao: number, b: Uint8Array, bo: number, len: number): boolean {
  for (let k = 0; k < len; k++) if (a[ao + k] !== b[bo + k]) return false;
  return true;
}

function pushCopy(ops: DeltaOp[], off: number, len: number): void {
  const last = ops[ops.length - 1];
  if (last?.op === 'copy' && last.off + last.len === off) last.len += len;
  else ops.push({ op: 'copy', off, len });
}

export interface DeltaStats {
  kind: 'generic' | 'model-aware';
  bytes: number;
  /** model-aware only: tensors of B copied unchanged from A, sent as a difference, and matched generically */
  tensors?: { unchanged: number; diffed: number; other: number };
}

export function genericDelta(base: Uint8Array, target: Uint8Array): { delta: Uint8Array; stats: DeltaStats } {
  const ops: DeltaOp[] = [];
  genericOps(new BaseIndex(base), target, 0, target.byteLength, ops);
  const delta = encodeDelta(base, target, ops);
  return { delta, stats: { kind: 'generic', bytes: delta.byteLength } };
}

/** ONNX-aware delta; null if either model does not parse as ONNX. */
export function modelAwareDelta(base: Uint8Array, target: Uint8Array): { delta: Uint8Array; stats: DeltaStats } | null {
  let a: TensorRange[], b: TensorRange[];
  try {
    a = tensorRanges(base);
    b = tensorRanges(target);
  } catch {
    return null;
  }
  const digest = (buf: Uint8Array, r: TensorRange) => createHash('sha256').update(buf.subarray(r.start, r.end)).digest('hex');
  const byName = new Map(a.map((r) => [r.key, r]));
  const byDigest = new Map<string, TensorRange>();
  for (const r of a) byDigest.set(digest(base, r), r);
  const index = new BaseIndex(base);
  const ops: DeltaOp[] = [];
  const tensors = { unchanged: 0, diffed: 0, other: 0 };
  let pos = 0;
  for (const t of b) {
    if (t.start < pos) continue; // (ranges never overlap in well-formed protobuf)
    genericOps(index, target, pos, t.start, ops);
    const len = t.end - t.start;
    const old = byName.get(t.key);
    const moved = byDigest.get(digest(target, t));
    if (moved) {
      pushCopy(ops, moved.start, len);
      tensors.unchanged++;
    } else if (old && old.end - old.start === len && old.dataType === t.dataType) {
      const diff = new Uint8Array(len);
      for (let k = 0; k < len; k++) diff[k] = (target[t.start + k] - base[old.start + k]) & 0xff;
      ops.push({ op: 'add', off: old.start, diff, width: ELEMENT_BYTES[t.dataType] ?? 1 });
      tensors.diffed++;
    } else {
      genericOps(index, target, t.start, t.end, ops);
      tensors.other++;
    }
    pos = t.end;
  }
  genericOps(index, target, pos, target.byteLength, ops);
  const delta = encodeDelta(base, target, ops);
  return { delta, stats: { kind: 'model-aware', bytes: delta.byteLength, tensors } };
}

/**
 * The model-aware delta when both artifacts parse as ONNX, else the generic one. (The model-aware one
 * block-matches everything that is not a tensor and finds tensors that moved, so it is never larger in
 * practice (bench/delta.ts), and making both would double the server's CPU time: ~1 s per 10 MB.)
 */
export function buildDelta(base: Uint8Array, target: Uint8Array): { delta: Uint8Array; stats: DeltaStats } {
  return modelAwareDelta(base, target) ?? genericDelta(base, target);
}

// The quantizer's report, read defensively: its shape is growing (summary, quantizedWeightBytes,
// skippedWeightBytes, per-node entries), so only what a push must say is taken from it, and "nothing was
// quantized" is decided by the bytes themselves when the report cannot tell.

export interface QuantFacts {
  /** the quantizer changed nothing: the float model ships */
  nothing: boolean;
  quantized: number;
  skipped: number;
  perChannel: boolean;
  /** why nothing was quantized (the quantizer's own summary, else the commonest skip reasons) */
  reason: string;
  /** " (N weight bytes quantized, M left float)" when the report gives them, else "" */
  bytesNote: string;
}

export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.byteLength === b.byteLength && Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

export function readQuantReport(report: unknown, unchanged: boolean): QuantFacts {
  const r = (report ?? {}) as Record<string, unknown>;
  const quantized = Array.isArray(r.quantized) ? r.quantized as { perChannel?: unknown }[] : [];
  const skipped = Array.isArray(r.skipped) ? r.skipped as { reason?: unknown }[] : [];
  const qb = typeof r.quantizedWeightBytes === 'number' ? r.quantizedWeightBytes : null;
  const sb = typeof r.skippedWeightBytes === 'number' ? r.skippedWeightBytes : null;
  const summary = r.summary as { reason?: unknown } | string | undefined;
  let reason = typeof summary === 'string' ? summary : typeof summary?.reason === 'string' ? summary.reason : null;
  if (!reason) {
    const counts = new Map<string, number>();
    for (const s of skipped) if (typeof s?.reason === 'string') counts.set(s.reason, (counts.get(s.reason) ?? 0) + 1);
    reason = counts.size
      ? [...counts.entries()].sort((a, b) => b[1] - a[1]).slice(0, 3).map(([why, n]) => `${n} x ${why}`).join('; ')
      : 'the model has no MatMul, Gemm or Conv with a constant float weight';
  }
  return {
    nothing: unchanged || (quantized.length === 0 && !(qb !== null && qb > 0)),
    quantized: quantized.length, skipped: skipped.length, perChannel: quantized.some((o) => o?.perChannel === true), reason,
    bytesNote: qb !== null && sb !== null ? ` (${qb} weight bytes quantized, ${sb} left float)` : '',
  };
}

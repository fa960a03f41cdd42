// The push's reading of the quantizer's report, whose shape is growing: today's fields, tomorrow's
// summary and byte counts, and the bytes themselves as the last word on "nothing was quantized".
import { describe, expect, it } from 'vitest';
import { readQuantReport, sameBytes } from '../../server/bundles/quant-report.ts';

describe('readQuantReport', () => {
  it.each([
    ['today: quantized[] and skipped[]', { quantized: [{ perChannel: true }, { perChannel: false }], skipped: [{ reason: 'bias stays float' }] }, false,
      { nothing: false, quantized: 2, skipped: 1, perChannel: true, bytesNote: '' }],
    ['nothing quantized: the commonest skip reasons, counted', { quantized: [], skipped: [{ reason: 'in If' }, { reason: 'in If' }, { reason: 'shared' }] }, true,
      { nothing: true, quantized: 0, reason: '2 x in If; 1 x shared' }],
    ['no candidates at all', { quantized: [], skipped: [] }, true, { nothing: true, reason: 'the model has no MatMul, Gemm or Conv with a constant float weight' }],
    ['a summary string is the reason', { quantized: [], skipped: [{ reason: 'x' }], summary: 'every weight is inside a subgraph' }, true, { nothing: true, reason: 'every weight is inside a subgraph' }],
    ['a summary object with a reason', { quantized: [], skipped: [], summary: { reason: 'opset 9' } }, true, { reason: 'opset 9' }],
    ['weight bytes, when given, are quoted', { quantized: [{}], skipped: [], quantizedWeightBytes: 1000, skippedWeightBytes: 24 }, false,
      { nothing: false, bytesNote: ' (1000 weight bytes quantized, 24 left float)' }],
    ['per-node entries without quantized[], but bytes quantized: not "nothing"', { nodes: [{}], quantizedWeightBytes: 5 }, false, { nothing: false }],
    ['bytes unchanged: nothing, whatever the report says', { quantized: [{}] }, true, { nothing: true }],
    ['no report at all (the quantizer could not read the model)', null, true, { nothing: true, quantized: 0, skipped: 0 }],
  ])('%s', (_name, report, unchanged, expected) => {
    expect(readQuantReport(report, unchanged)).toMatchObject(expected);
  });

  it('sameBytes compares content, not identity', () => {
    expect(sameBytes(Uint8Array.of(1, 2, 3), Uint8Array.of(1, 2, 3))).toBe(true);
    expect(sameBytes(Uint8Array.of(1, 2, 3), Uint8Array.of(1, 2, 4))).toBe(false);
    expect(sameBytes(Uint8Array.of(1, 2, 3).subarray(1), Uint8Array.of(2, 3))).toBe(true);
  });
});

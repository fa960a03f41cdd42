// What fleetctl push prints for each outcome: one line per fact, and no line that contradicts another
// (no "FLOAT FALLBACK" next to "gate PASSED", no gate claimed when nothing was quantized).
import { describe, expect, it } from 'vitest';
import { pushLines } from '../../cli/commands/push.ts';

const gate = (passed: boolean) => ({
  passed, agreement: null, samples: 3, failures: passed ? [] : ['53: sqnrDb 63.15 dB is below the minimum 1000 dB'],
  floatAccuracy: null, quantAccuracy: null, accuracyDrop: null, worstClassDrop: null, worstClass: null,
  thresholds: { minAgreement: 0.99, maxAccuracyDrop: 1, maxWorstClassDrop: 3, minSqnrDb: passed ? 20 : 1000, minCosine: 0.99 },
  outputs: [{ name: '53', kind: 'fidelity' as const, passed, sqnrDb: 63.1524, cosine: 0.99999976, maxAbsError: 0.000986, maxRelError: 0.000988, failures: [] }],
});
const response = (outcome: 'int8' | 'float' | 'float-fallback' | 'nothing-quantized', summary: string, g: ReturnType<typeof gate> | null, hc: { source: 'samples' | 'synthetic'; location: 'inline' | 'golden-blob' } = { source: 'samples', location: 'inline' }) => ({
  manifestSha256: 'a'.repeat(64), modelId: 'm', version: 1,
  manifest: { quantization: { scheme: outcome === 'int8' ? 'int8-weight-symmetric' : 'none' }, artifact: { sha256: 'b'.repeat(64), length: 10 } },
  report: {
    floatBytes: 40, artifactBytes: outcome === 'int8' ? 10 : 40, gate: g, shippedFloat: outcome !== 'int8', outcome, quantizationSummary: summary,
    healthCheck: { ...hc, vectors: 2, bytes: 1234, warnings: [], ...(hc.location === 'inline' ? {} : { goldenSha256: 'c'.repeat(64) }) },
  },
});

describe('fleetctl push output', () => {
  it('int8: summary, sizes, each output with its figures and thresholds, health-check source and place', () => {
    expect(pushLines(response('int8', 'INT8: 2 weights quantized to INT8, 11 left float; gate passed', gate(true)))).toEqual([
      `bundle m v1: manifest ${'a'.repeat(64)}`,
      'quantization: INT8: 2 weights quantized to INT8, 11 left float; gate passed',
      'artifact: int8-weight-symmetric, 40 -> 10 bytes (25.0% of float)',
      'gate PASSED on 3 reference samples:',
      '  53 (fidelity): SQNR 63.15 dB (min 20 dB); cosine 1.00000 (min 0.99); max abs error 9.86e-4; max rel error 9.88e-4',
      'health check: 2 vectors from your samples, inline in the manifest (1234 bytes)',
    ]);
  });

  it('nothing quantized: says why, claims no gate and no fallback', () => {
    const lines = pushLines(response('nothing-quantized', 'nothing could be quantized: 6 x inside subgraph', null, { source: 'samples', location: 'golden-blob' }));
    expect(lines).toContain('quantization: nothing could be quantized: 6 x inside subgraph');
    expect(lines).toContain('artifact: none, 40 -> 40 bytes (100.0% of float)');
    expect(lines).toContain('gate: not run (nothing was quantized: the float model ships as uploaded)');
    expect(lines).toContain(`health check: 2 vectors from your samples, golden blob ${'c'.repeat(64)} (1234 bytes)`);
    expect(lines.join('\n')).not.toMatch(/FALLBACK|PASSED/);
  });

  it('float fallback only when INT8 failed its gate and fallback was asked for, next to the failed gate', () => {
    const lines = pushLines(response('float-fallback', 'INT8 (2 weights quantized to INT8, 11 left float) failed its gate; the float model ships instead (allowFloatFallback)', gate(false)));
    expect(lines.filter((l) => /FALLBACK/.test(l))).toEqual(['FLOAT FALLBACK: the INT8 model failed its gate and --allow-float-fallback was given: the float model ships']);
    expect(lines).toContain('gate FAILED on 3 reference samples:');
    expect(lines).toContain('  FAILED: 53: sqnrDb 63.15 dB is below the minimum 1000 dB');
    expect(lines.join('\n')).not.toMatch(/PASSED/);
    const float = pushLines(response('float', 'not asked for (quantize: "none"): the float model ships as uploaded', null, { source: 'synthetic', location: 'inline' }));
    expect(float.join('\n')).not.toMatch(/FALLBACK|PASSED/);
    expect(float).toContain('gate: not run (float bundle: quantization not asked for)');
    expect(float).toContain('health check: 2 vectors from synthetic inputs made from the signature, inline in the manifest (1234 bytes)');
  });
});

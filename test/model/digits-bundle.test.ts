// The digits model end to end: trained (or cached) MLP -> inspect -> onnxruntime-web accuracy ->
// INT8 quantization -> accuracy gate, plus candidates built to fail the gate.
import { describe, it, expect } from 'vitest';
import { buildDigitsModel, DIGITS_INPUT, DIGITS_OUTPUT, type DigitsModel } from '../../server/training/digits.ts';
import { inspectModel } from '../../server/onnx/inspect-model.ts';
import { decodeModel, encodeModel, readTensor, tensor } from '../../server/onnx/graph-builder.ts';
import { quantizeModel } from '../../server/quantize/quantize.ts';
import { GateThresholds, runAccuracyGate, type GateResult } from '../../server/quantize/accuracy-gate.ts';
import { createSession, runSession } from '../../runtime/onnx-session.ts';
import { mulberry32 } from '../../server/training/prng.ts';

// First run trains (~20 s on 2 cores) and fills build/digits/; later runs read the cache.
const TRAIN_TIMEOUT = 120_000;
let cached: Promise<DigitsModel> | undefined;
const digits = () => (cached ??= buildDigitsModel());

function argmaxAccuracy(probs: Float32Array, labels: number[]): number {
  let ok = 0;
  labels.forEach((label, i) => {
    const row = probs.subarray(i * 10, i * 10 + 10);
    if (row.indexOf(Math.max(...row)) === label) ok++;
  });
  return ok / labels.length;
}

/** The figure a failure line names, after the output it is about ("probs: agreement 0.93 is below ..."). */
const figure = (f: string) => f.replace(/^[^:]+: /, '').split(' ')[0];

/** Every figure beyond its threshold must be named in failures, and nothing else. */
function expectFailuresMatchFigures(r: GateResult): void {
  const t = r.thresholds;
  const expected = [
    r.agreement !== null && r.agreement < t.minAgreement && 'agreement',
    r.accuracyDrop !== null && r.accuracyDrop > t.maxAccuracyDrop && 'accuracyDrop',
    r.worstClassDrop !== null && r.worstClassDrop > t.maxWorstClassDrop && 'worstClassDrop',
  ].filter(Boolean);
  expect(r.failures.map(figure)).toEqual(expected);
  expect(r.failures.every((f) => f.startsWith(`${DIGITS_OUTPUT}: `))).toBe(true);
  expect(r.passed).toBe(expected.length === 0);
}

describe('digits model', () => {
  it('reaches >= 95% held-out accuracy, and onnxruntime-web agrees on the reference set', { timeout: TRAIN_TIMEOUT }, async () => {
    const d = await digits();
    expect(d.heldOutAccuracy).toBeGreaterThanOrEqual(0.95);
    const info = inspectModel(d.onnx);
    expect(info.inputs).toEqual([{ name: DIGITS_INPUT, type: 'float32', shape: ['N', 784] }]);
    expect(info.outputs).toEqual([{ name: DIGITS_OUTPUT, type: 'float32', shape: ['N', 10] }]);
    expect(info.opTypes).toEqual(['Gemm', 'Relu', 'Softmax']);
    expect(info.opset).toBeGreaterThanOrEqual(13);
    expect(info.weightBytes).toBeGreaterThan(0.99 * d.onnx.length);

    const [n, dim] = d.reference.shape;
    expect(dim).toBe(784);
    expect(d.reference.labels).toHaveLength(n);
    expect(new Set(d.reference.labels).size).toBe(10);
    const session = await createSession(d.onnx);
    const out = await runSession(session, { [DIGITS_INPUT]: { data: d.reference.inputs, dims: [n, dim] } });
    await session.release();
    const probs = out[DIGITS_OUTPUT].data as Float32Array;
    expect(probs[0] + probs[1] + probs[2] + probs[3] + probs[4] + probs[5] + probs[6] + probs[7] + probs[8] + probs[9]).toBeCloseTo(1, 4);
    expect(argmaxAccuracy(probs, d.reference.labels)).toBeGreaterThanOrEqual(0.95);
  });

  it('serves the second build from the cache with identical bytes', { timeout: TRAIN_TIMEOUT }, async () => {
    const first = await digits();
    const again = await buildDigitsModel();
    expect(again.cached).toBe(true);
    expect(again.onnx).toEqual(first.onnx);
    expect(again.reference.labels).toEqual(first.reference.labels);
    expect(again.heldOutAccuracy).toBe(first.heldOutAccuracy);
  });
});

describe('quantized digits bundle', () => {
  it('is at most 30% of the float bytes and passes the accuracy gate', { timeout: TRAIN_TIMEOUT }, async () => {
    const d = await digits();
    const { bytes, report } = quantizeModel(d.onnx);
    expect(report.quantBytes).toBe(bytes.length);
    expect(bytes.length / d.onnx.length).toBeLessThanOrEqual(0.3);
    expect(report.sizeRatio).toBeLessThanOrEqual(0.3);
    expect(report.quantized.map((q) => [q.weight, q.opType])).toEqual([['fc1.weight', 'Gemm'], ['fc2.weight', 'Gemm']]);
    // int8 -> Cast -> Mul, folded by onnxruntime at load: no session config needed
    expect(report.sessionConfig).toEqual({});
    expect(inspectModel(bytes).opTypes).toEqual(['Cast', 'Gemm', 'Mul', 'Relu', 'Softmax']);

    const gate = await runAccuracyGate(d.onnx, bytes, d.reference);
    expect(gate.samples).toBe(d.reference.shape[0]);
    expect(gate.agreement).toBeGreaterThanOrEqual(0.99);
    expect(gate.quantAccuracy!).toBeGreaterThanOrEqual(0.95);
    expectFailuresMatchFigures(gate);
    expect(gate.passed).toBe(true);
  });

  it('fails the gate when quantized with a broken scale, naming the failing figures', { timeout: TRAIN_TIMEOUT }, async () => {
    const d = await digits();
    const broken = quantizeModel(d.onnx, { debugScaleFactor: 0.25 });
    const gate = await runAccuracyGate(d.onnx, broken.bytes, d.reference);
    expect(gate.passed).toBe(false);
    expect(gate.failures.length).toBeGreaterThan(0);
    expectFailuresMatchFigures(gate);
    expect(gate.failures.find((f) => figure(f) === 'agreement')).toContain(gate.agreement.toFixed(4));
    expect(gate.failures.find((f) => figure(f) === 'agreement')).toContain('0.99');
  });

  it('fails the gate for a float candidate with perturbed weights, and honours custom thresholds', { timeout: TRAIN_TIMEOUT }, async () => {
    const d = await digits();
    const m = decodeModel(d.onnx);
    const inits = m.graph!.initializer!;
    const idx = inits.findIndex((t) => t.name === 'fc1.weight');
    const w = readTensor(inits[idx]) as Float32Array;
    const rand = mulberry32(5);
    const rms = Math.sqrt(w.reduce((a, v) => a + v * v, 0) / w.length);
    inits[idx] = tensor('fc1.weight', w.map((v) => v + (rand() * 2 - 1) * 3 * rms), inits[idx].dims);
    const perturbed = encodeModel(m);

    const gate = await runAccuracyGate(d.onnx, perturbed, d.reference, {}, { quantSession: {} });
    expect(gate.passed).toBe(false);
    expect(gate.accuracyDrop!).toBeGreaterThan(1);
    expectFailuresMatchFigures(gate);
    expect(gate.failures.some((f) => figure(f) === 'accuracyDrop' && f.includes('maximum 1 points'))).toBe(true);

    // Thresholds loose enough for the figures just measured: the same candidate passes.
    const loose = await runAccuracyGate(d.onnx, perturbed, d.reference, {
      minAgreement: Math.floor(gate.agreement * 100) / 100,
      maxAccuracyDrop: Math.ceil(gate.accuracyDrop!) ,
      maxWorstClassDrop: Math.ceil(gate.worstClassDrop!),
    }, { quantSession: {}, batchSize: 64 });
    expect(loose.passed).toBe(true);
    expect(loose.agreement).toBe(gate.agreement);
  });

  it('GateThresholds defaults to 0.99 agreement, 1 point drop, 3 points per class, 20 dB SQNR, 0.99 cosine', () => {
    expect(GateThresholds.parse({})).toEqual({ minAgreement: 0.99, maxAccuracyDrop: 1, maxWorstClassDrop: 3, minSqnrDb: 20, minCosine: 0.99 });
    expect(GateThresholds.safeParse({ minAgreement: 1.5 }).success).toBe(false);
  });

  it('gates on agreement alone when the reference has no labels', { timeout: TRAIN_TIMEOUT }, async () => {
    const d = await digits();
    const r = await runAccuracyGate(d.onnx, d.onnx, { inputs: d.reference.inputs, shape: d.reference.shape }, {}, { quantSession: {} });
    expect(r).toMatchObject({ passed: true, agreement: 1, floatAccuracy: null, accuracyDrop: null, worstClassDrop: null, failures: [] });
  });
});

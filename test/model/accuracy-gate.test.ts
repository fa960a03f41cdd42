// The gate's figures on outputs whose answers are known in closed form: a candidate whose regression
// output is the float one times 1.2 has SQNR 10*log10(1/0.2^2) = 13.98 dB and cosine 1; a classifier
// scaled by 2 keeps every top-1; a per-position classifier negated loses every top-1.
import { describe, expect, it } from 'vitest';
import { encodeModel, floatTensor, graph, int64Tensor, model, node, valueInfo } from '../../server/onnx/graph-builder.ts';
import { defaultKind, runGate } from '../../server/quantize/accuracy-gate.ts';
import type { RunSample } from '../../server/bundles/samples.ts';
import { randomFloats } from './tiny-models.ts';

const W = randomFloats(12, 1);
const V = randomFloats(4, 2);
const U = randomFloats(24, 3);

/** x [batch, 4] -> scores = xW [batch, 3], value = xV [batch, 1], tok = reshape(xU) [batch, 2, 3] */
function threeHeads(w: Float32Array, v: Float32Array, u: Float32Array): Uint8Array {
  return encodeModel(model(graph({
    nodes: [
      node('MatMul', ['x', 'W'], ['scores']),
      node('MatMul', ['x', 'V'], ['value']),
      node('MatMul', ['x', 'U'], ['xu']),
      node('Reshape', ['xu', 'tok_shape'], ['tok']),
    ],
    inputs: [valueInfo('x', 'float32', ['batch', 4])],
    outputs: [valueInfo('scores', 'float32', ['batch', 3]), valueInfo('value', 'float32', ['batch', 1]), valueInfo('tok', 'float32', ['batch', 2, 3])],
    initializers: [floatTensor('W', w, [4, 3]), floatTensor('V', v, [4, 1]), floatTensor('U', u, [4, 6]), int64Tensor('tok_shape', [-1, 2, 3], [3])],
  })));
}

const io = {
  inputs: [{ name: 'x', type: 'float32' as const, shape: ['batch', 4] }],
  outputs: [
    { name: 'scores', type: 'float32' as const, shape: ['batch', 3] },
    { name: 'value', type: 'float32' as const, shape: ['batch', 1] },
    { name: 'tok', type: 'float32' as const, shape: ['batch', 2, 3] },
  ],
};

function samples(n: number, labels?: (x: Float32Array) => number): RunSample[] {
  return Array.from({ length: n }, (_, i) => {
    const data = randomFloats(4, 100 + i);
    return { inputs: { x: { dtype: 'float32', dims: [1, 4], data } }, ...(labels ? { label: labels(data) } : {}) };
  });
}

/** the float model's own answer for the scores head, as a label: float accuracy is exactly 1 */
function argmaxScores(x: Float32Array): number {
  const s = [0, 1, 2].map((c) => x.reduce((acc, xi, k) => acc + xi * W[k * 3 + c], 0));
  return s.indexOf(Math.max(...s));
}

describe('accuracy gate figures', () => {
  const float = threeHeads(W, V, U);
  const candidate = threeHeads(W.map((x) => 2 * x), V.map((x) => 1.2 * x), U.map((x) => -x));

  it('default kinds: a float [N, C>=2] output is a classifier; [N, 1], rank 3 and non-float outputs are fidelity', () => {
    expect(io.outputs.map(defaultKind)).toEqual(['classifier', 'fidelity', 'fidelity']);
    expect(defaultKind({ name: 'ids', type: 'int64', shape: ['N', 5] })).toBe('fidelity');
    expect(defaultKind({ name: 'p', type: 'float32', shape: [] })).toBe('fidelity');
  });

  it('each output judged by its kind, with closed-form figures, failures naming output, figure, value and threshold', async () => {
    const r = await runGate(float, candidate, samples(20, argmaxScores), io, {}, { kinds: { tok: 'classifier' }, quantSession: {} });
    const [scores, value, tok] = r.outputs;
    expect(scores).toMatchObject({ name: 'scores', kind: 'classifier', positions: 20, agreement: 1, floatAccuracy: 1, quantAccuracy: 1, accuracyDrop: 0, worstClassDrop: 0, passed: true });
    expect(value.kind).toBe('fidelity');
    expect(value.sqnrDb).toBeCloseTo(10 * Math.log10(1 / 0.04), 3);
    expect(value.cosine).toBeCloseTo(1, 6);
    expect(value.maxRelError).toBeCloseTo(0.2, 5);
    expect(value.failures).toEqual([`value: sqnrDb ${value.sqnrDb!.toFixed(2)} dB is below the minimum 20 dB`]);
    expect(value.failures[0]).toBe('value: sqnrDb 13.98 dB is below the minimum 20 dB');
    // per position for [N, T, C]: 2 positions per sample, every top-1 flipped by the negation
    expect(tok).toMatchObject({ name: 'tok', kind: 'classifier', positions: 40, agreement: 0, floatAccuracy: null, passed: false });
    expect(tok.failures).toEqual(['tok: agreement 0.0000 is below the minimum 0.99']);
    // the labels refer to the first classifier output; its figures are the top-level ones
    expect(r).toMatchObject({ passed: false, primaryOutput: 'scores', agreement: 1, floatAccuracy: 1, accuracyDrop: 0, samples: 20 });
    expect(r.failures).toEqual([...value.failures, ...tok.failures]);
  });

  it('thresholds move the verdict: 13 dB passes a candidate the default 20 dB refuses; identical outputs report SQNR null', async () => {
    const loose = await runGate(float, candidate, samples(5), io, { minSqnrDb: 13 }, { outputNames: ['value'], quantSession: {} });
    expect(loose.passed).toBe(true);
    expect(loose.outputs.map((o) => o.name)).toEqual(['value']);
    const same = await runGate(float, float, samples(5), io, {}, { quantSession: {} });
    expect(same.passed).toBe(true);
    expect(same.outputs[1]).toMatchObject({ sqnrDb: null, cosine: 1, maxAbsError: 0, maxRelError: 0 });
  });

  it('batched and one-by-one runs give the same figures', async () => {
    const s = samples(9, argmaxScores);
    const batched = await runGate(float, candidate, s, io, {}, { quantSession: {} });
    const single = await runGate(float, candidate, s, io, {}, { quantSession: {}, batchSize: 1 });
    expect(single.outputs.map((o) => o.agreement)).toEqual(batched.outputs.map((o) => o.agreement));
    expect(single.outputs[1].sqnrDb).toBeCloseTo(batched.outputs[1].sqnrDb!, 4);
  });

  it('a candidate that cannot run fails the gate (it does not throw); a float model that cannot run is a 422', async () => {
    const broken = new Uint8Array(float.slice(0, float.length - 7));
    const r = await runGate(float, broken, samples(2), io, {}, { quantSession: {} });
    expect(r.passed).toBe(false);
    expect(r.failures).toHaveLength(1);
    expect(r.failures[0]).toMatch(/^the quantized model failed on onnxruntime could not load the model: /);
    await expect(runGate(broken, float, samples(2), io)).rejects.toMatchObject({ code: 'FLEET_ERR_MODEL_RUN_FAILED', status: 422 });
  });
});

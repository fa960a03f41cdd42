// The whole path over loopback: real broker, real SQLite, real onnxruntime-web, real signatures. The
// model the devices install and serve is an INT8 bundle pushed as a user pushes one: the trained digits
// model with its labelled reference set, quantize: 'int8', behind the accuracy gate.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync, writeFileSync } from 'node:fs';
import { generateKeyPair, keyIdOf } from '../../shared/crypto.ts';
import { signDocument } from '../../shared/envelope.ts';
import type { Manifest } from '../../shared/messages.ts';
import type { SimulatedFleet } from '../../firmware-sim/fleet.ts';
import { assign, pushBundle, startFleet, startTestServer, type TestServer } from '../helpers/harness.ts';
import { tinyClassifier } from '../helpers/tiny-models.ts';
import { buildDigitsModel, DIGITS_INPUT, DIGITS_OUTPUT, type DigitsModel } from '../../server/training/digits.ts';
import { createSession, runSession } from '../../runtime/onnx-session.ts';
import { encodeTensor } from '../../shared/tensor-codec.ts';
import { waitFor } from '../helpers/wait.ts';

describe('end to end: one signed model from the server to simulated devices', () => {
  let server: TestServer;
  let fleet: SimulatedFleet;
  let v1: Awaited<ReturnType<typeof pushBundle>> & { manifest: { quantization: { scheme: string } }; report: { outcome: string; floatBytes: number; artifactBytes: number; gate: { passed: boolean } | null } };
  let digits: DigitsModel;
  const ids = () => fleet.agents.map((a) => a.deviceId);

  beforeAll(async () => {
    server = await startTestServer({ tls: true }); // HTTPS and MQTTS, devices pin the dev CA
    fleet = await startFleet(server, { count: 20, hardware: (i) => (i % 2 ? 'cam-a' : 'cam-b') });
    // first run on a fresh clone trains the model (~20 s on 2 cores) into build/digits/; later runs read it
    digits = await buildDigitsModel();
    const reference = { inputs: { [DIGITS_INPUT]: encodeTensor('float32', digits.reference.shape, digits.reference.inputs) }, labels: digits.reference.labels };
    v1 = await pushBundle(server, 'digits', digits.onnx, { quantize: 'int8', reference }) as typeof v1;
  }, 180_000);

  afterAll(async () => {
    await fleet?.stop();
    await server?.close();
  });

  it('an INT8 bundle passes the accuracy gate, reaches every device, which then answers inference with it', async () => {
    // the push quantized the weights and the gate passed: the signed manifest says INT8, the artifact shrank
    expect(v1.report.outcome).toBe('int8');
    expect(v1.report.gate?.passed).toBe(true);
    expect(v1.manifest.quantization.scheme).toMatch(/int8/);
    expect(v1.manifest.artifact.length).toBe(v1.report.artifactBytes);
    expect(v1.report.artifactBytes).toBeLessThan(v1.report.floatBytes / 2);

    await assign(server, v1.manifestSha256, ids());
    await fleet.waitAll((s) => s.state === 'active' && s.active?.manifestSha256 === v1.manifestSha256, 60_000);
    expect(fleet.agents.filter((a) => a.active?.manifestSha256 === v1.manifestSha256)).toHaveLength(20);

    // the devices serve the INT8 bytes: their answers on 20 reference digits are exactly a bare
    // onnxruntime-web session's on the signed artifact, and they name the digits' classes
    const n = 20;
    const feeds = { [DIGITS_INPUT]: { data: digits.reference.inputs.slice(0, n * 784), dims: [n, 784] } };
    const int8Bytes = readFileSync(server.app.fleet.blobs.pathOf(v1.manifest.artifact.sha256));
    const bare = await createSession(new Uint8Array(int8Bytes));
    const expected = (await runSession(bare, feeds))[DIGITS_OUTPUT].data as Float32Array;
    await bare.release();
    const classes = (p: Float32Array) => Array.from({ length: n }, (_, i) => { const row = Array.from(p.subarray(i * 10, i * 10 + 10)); return row.indexOf(Math.max(...row)); });
    for (const i of [0, 3, 19]) {
      const out = (await fleet.agents[i].infer(feeds))[DIGITS_OUTPUT].data as Float32Array;
      expect(Array.from(out)).toEqual(Array.from(expected));
      expect(classes(out)).toEqual(classes(expected));
    }
    const right = classes(expected).filter((c, i) => c === digits.reference.labels[i]).length;
    expect(right, `classes ${classes(expected)} labels ${digits.reference.labels.slice(0, n)}`).toBeGreaterThanOrEqual(18);

    // the server's view agrees: every device reports v1 active
    const res = await server.app.inject({ method: 'GET', url: '/v1/devices' });
    const devices = res.json().devices as { deviceId: string; active: { version: number } | null; lastStatus: { state: string } }[];
    expect(devices).toHaveLength(20);
    await waitFor(async () => {
      const d = (await server.app.inject({ method: 'GET', url: '/v1/devices' })).json().devices as typeof devices;
      return d.every((x) => x.active?.version === v1.version && x.lastStatus?.state === 'active');
    });
  });

  it('a bundle whose bytes were altered after signing is refused by every device, which stays on v1', async () => {
    const v2 = await pushBundle(server, 'tiny', tinyClassifier(2));
    const blob = `${server.app.fleet.blobs.pathOf(v2.manifest.artifact.sha256)}`;
    const bytes = readFileSync(blob);
    bytes[bytes.length - 5] ^= 0xff; // same length, different content
    writeFileSync(blob, bytes);

    await assign(server, v2.manifestSha256, ids());
    await fleet.waitAll((s) => s.manifestSha256 === v2.manifestSha256 && s.state === 'rejected', 30_000);
    for (const a of fleet.agents) {
      expect(a.lastStatus?.reason).toBe('HASH_MISMATCH');
      expect(a.active?.manifestSha256).toBe(v1.manifestSha256);
    }
    await waitFor(async () => {
      const d = (await server.app.inject({ method: 'GET', url: `/v1/devices/${fleet.agents[0].deviceId}` })).json();
      return d.lastStatus?.reason === 'HASH_MISMATCH' && d.active?.version === v1.version;
    });
  });

  it('a manifest signed by an unknown key is refused by every device with UNKNOWN_KEY', async () => {
    const { manifest } = server.app.fleet.director.bundleEnvelope(v1.manifestSha256);
    const rogue = generateKeyPair();
    const forged: Manifest = { ...manifest, version: 99, issuedAt: new Date().toISOString() };
    const envelope = signDocument(forged, { ...rogue, keyId: keyIdOf(rogue.publicKey) });
    await server.app.fleet.director.assignEnvelope(envelope, forged, ids());
    await fleet.waitAll((s) => s.state === 'rejected' && s.reason === 'UNKNOWN_KEY', 30_000);
    for (const a of fleet.agents) expect(a.active?.manifestSha256).toBe(v1.manifestSha256);
    // the device's report travels over MQTT to the server: wait for it to be stored
    await waitFor(async () => {
      const d = (await server.app.inject({ method: 'GET', url: `/v1/devices/${fleet.agents[5].deviceId}` })).json();
      return d.events.some((e: { reason: string }) => e.reason === 'UNKNOWN_KEY');
    });
  });
});

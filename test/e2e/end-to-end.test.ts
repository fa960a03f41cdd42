// The whole path over loopback: real broker, real SQLite, real onnxruntime-web, real signatures.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync, writeFileSync } from 'node:fs';
import { generateKeyPair, keyIdOf } from '../../shared/crypto.ts';
import { signDocument } from '../../shared/envelope.ts';
import type { Manifest } from '../../shared/messages.ts';
import type { SimulatedFleet } from '../../firmware-sim/fleet.ts';
import { assign, pushBundle, startFleet, startTestServer, type TestServer } from '../helpers/harness.ts';
import { tinyClassifier } from '../helpers/tiny-models.ts';
import { waitFor } from '../helpers/wait.ts';

describe('end to end: one signed model from the server to simulated devices', () => {
  let server: TestServer;
  let fleet: SimulatedFleet;
  let v1: Awaited<ReturnType<typeof pushBundle>>;
  const ids = () => fleet.agents.map((a) => a.deviceId);

  beforeAll(async () => {
    server = await startTestServer({ tls: true }); // HTTPS and MQTTS, devices pin the dev CA
    fleet = await startFleet(server, { count: 20, hardware: (i) => (i % 2 ? 'cam-a' : 'cam-b') });
    v1 = await pushBundle(server, 'tiny', tinyClassifier(1));
  }, 60_000);

  afterAll(async () => {
    await fleet?.stop();
    await server?.close();
  });

  it('a good bundle reaches every device, which then answers inference with it', async () => {
    await assign(server, v1.manifestSha256, ids());
    await fleet.waitAll((s) => s.state === 'active' && s.active?.manifestSha256 === v1.manifestSha256, 30_000);
    const out = await fleet.agents[3].infer({ x: { data: new Float32Array(8).fill(0.5), dims: [1, 8] } });
    const probs = Array.from(out.probs.data as Float32Array);
    expect(probs).toHaveLength(4);
    expect(probs.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 5);

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

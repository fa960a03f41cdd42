// The attacks TUF and Uptane name, end to end against real agents (enrolled, over loopback): each is
// refused with its reason code, every device stays on its good model, nothing is lost from the store,
// and the server keeps serving.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync, writeFileSync } from 'node:fs';
import { generateKeyPair, keyIdOf } from '../../shared/crypto.ts';
import { envelopeDigest, signDocument, type SigningKey } from '../../shared/envelope.ts';
import type { DesiredMessage, DesiredState, Envelope, Manifest } from '../../shared/messages.ts';
import type { ReasonCode } from '../../shared/reason-codes.ts';
import { topics } from '../../shared/topics.ts';
import type { SimulatedFleet } from '../../firmware-sim/fleet.ts';
import { assign, pushBundle, startFleet, startTestServer, type TestServer } from '../helpers/harness.ts';
import { tinyClassifier } from '../helpers/tiny-models.ts';
import { expectNothingLost, stillServing, storeCounts } from './helpers.ts';

let server: TestServer;
let fleet: SimulatedFleet;
let good: Awaited<ReturnType<typeof pushBundle>>;
let v1: Awaited<ReturnType<typeof pushBundle>>;
let oldDesired: Map<string, string>;
const ids = () => fleet.agents.map((a) => a.deviceId);
const envelopeOf = (sha: string) => server.app.fleet.director.bundleEnvelope(sha);
const targets = (): SigningKey => server.app.fleet.keys.signerFor('targets');
const hour = 3600_000;

/** Deliver an attack, then: every device refuses it with `reason`, stays on the good model, store intact, server up. */
async function expectRefusedByAll(reason: ReasonCode, deliver: () => Promise<unknown>) {
  const before = storeCounts(server);
  const active = fleet.agents.map((a) => a.active?.manifestSha256);
  expect(active.every((m) => m === good.manifestSha256)).toBe(true);
  const seen = new Map(fleet.agents.map((a) => [a.deviceId, a.lastStatus]));
  await deliver();
  await fleet.waitAll((s, a) => s !== seen.get(a.deviceId) && s.state === 'rejected' && s.reason === reason, 30_000);
  expect(fleet.agents.map((a) => a.active?.manifestSha256)).toEqual(active);
  expect(expectNothingLost(before, storeCounts(server))).toEqual([]);
  expect(await stillServing(server)).toBe(true);
  const out = await fleet.agents[0].infer({ x: { data: new Float32Array(8).fill(0.5), dims: [1, 8] } });
  expect(Array.from(out.probs.data as Float32Array)).toHaveLength(4);
}

/** A manifest that copies the good one with changes, signed by `key`. */
function forge(changes: Partial<Manifest>, key: SigningKey = targets()): { envelope: Envelope; manifest: Manifest } {
  const base = envelopeOf(good.manifestSha256).manifest;
  const manifest = { ...base, issuedAt: new Date().toISOString(), ...changes } as Manifest;
  return { envelope: signDocument(manifest, key), manifest };
}
const deliver = (f: { envelope: Envelope; manifest: Pick<Manifest, 'modelId' | 'version'> }) => server.app.fleet.director.assignEnvelope(f.envelope, f.manifest, ids());

beforeAll(async () => {
  server = await startTestServer({ tls: true, config: { allowUnenrolledDevices: false } });
  fleet = await startFleet(server, { count: 3, hardware: () => 'cam-a', agentOverrides: { probationInferences: 0, probationSeconds: 0 } });
  v1 = await pushBundle(server, 'tiny', tinyClassifier(1));
  await assign(server, v1.manifestSha256, ids());
  await fleet.waitAll((s) => s.state === 'active' && s.active?.manifestSha256 === v1.manifestSha256, 30_000);
  good = await pushBundle(server, 'tiny', tinyClassifier(2));
  await assign(server, good.manifestSha256, ids());
  await fleet.waitAll((s) => s.state === 'active' && s.active?.manifestSha256 === good.manifestSha256, 30_000);
  // what an attacker recorded off the wire earlier: each device's current desired state
  const rows = server.app.fleet.db.prepare('SELECT device_id, desired_json FROM devices WHERE desired_json IS NOT NULL').all() as { device_id: string; desired_json: string }[];
  oldDesired = new Map(rows.map((r) => [r.device_id, r.desired_json]));
}, 90_000);

afterAll(async () => {
  await fleet?.stop();
  await server?.close();
});

describe('manifest attacks against enrolled devices', () => {
  it('rollback attack: a validly signed older version than installed -> ROLLBACK', async () => {
    await expectRefusedByAll('ROLLBACK', () => assign(server, v1.manifestSha256, ids()));
  });

  it('tampered bytes: the artifact changed after signing -> HASH_MISMATCH', async () => {
    const v3 = await pushBundle(server, 'tiny', tinyClassifier(3));
    const blob = server.app.fleet.blobs.pathOf(v3.manifest.artifact.sha256);
    const bytes = readFileSync(blob);
    bytes[bytes.length - 5] ^= 0xff;
    writeFileSync(blob, bytes);
    await expectRefusedByAll('HASH_MISMATCH', () => assign(server, v3.manifestSha256, ids()));
  });

  it('tampered manifest field: the signed text changed, the signature kept -> BAD_SIGNATURE', async () => {
    const { envelope } = envelopeOf(good.manifestSha256);
    const signed = envelope.signed.replace(`"version":${good.version}`, '"version":50');
    expect(signed).not.toBe(envelope.signed);
    await expectRefusedByAll('BAD_SIGNATURE', () => deliver({ envelope: { ...envelope, signed }, manifest: { modelId: 'tiny', version: 50 } }));
  });

  it('unknown key: a manifest signed by a key the root never listed -> UNKNOWN_KEY', async () => {
    const rogue = generateKeyPair();
    await expectRefusedByAll('UNKNOWN_KEY', () => deliver(forge({ version: 60 }, { ...rogue, keyId: keyIdOf(rogue.publicKey) })));
  });

  it('freeze attack: a validly signed but expired manifest -> EXPIRED', async () => {
    await expectRefusedByAll('EXPIRED', () => deliver(forge({ version: 70, issuedAt: new Date(Date.now() - 2 * hour).toISOString(), expires: new Date(Date.now() - hour).toISOString() })));
  });

  it('mix-and-match: a valid manifest for another hardware class -> WRONG_HARDWARE', async () => {
    const other = await pushBundle(server, 'tiny', tinyClassifier(4), { quantize: 'none', hardwareTargets: ['other-hw'] });
    await expectRefusedByAll('WRONG_HARDWARE', () => assign(server, other.manifestSha256, ids()));
  });

  it('mix-and-match: a valid manifest of another model under this model\'s desired state -> MANIFEST_MISMATCH', async () => {
    const other = await pushBundle(server, 'other-model', tinyClassifier(5));
    await expectRefusedByAll('MANIFEST_MISMATCH', () => deliver({ envelope: envelopeOf(other.manifestSha256).envelope, manifest: { modelId: 'tiny', version: other.version } }));
  });

  it('mix-and-match: another device\'s signed desired state (fresh, director-signed) -> WRONG_DEVICE', async () => {
    const [a, b, c] = ids();
    const neighbour: Record<string, string> = { [a]: b, [b]: c, [c]: a };
    const { envelope } = envelopeOf(good.manifestSha256);
    const keyset = server.app.fleet.keys.keysetEnvelope;
    const director = server.app.fleet.keys.signerFor('director');
    await expectRefusedByAll('WRONG_DEVICE', async () => {
      for (const id of ids()) {
        const desired: DesiredState = {
          type: 'desired', deviceId: neighbour[id], seq: 1_000_000, issuedAt: new Date().toISOString(), expires: new Date(Date.now() + hour).toISOString(),
          modelId: 'tiny', version: good.version, manifestSha256: envelopeDigest(envelope),
        };
        const msg: DesiredMessage = { keyset, manifest: envelope, director: signDocument(desired, director) };
        await server.app.fleet.broker.publish(topics.desired(id), JSON.stringify(msg), { qos: 1, retain: true });
      }
    });
  });

  it('endless data: the server sends more bytes than the manifest says -> SIZE_MISMATCH', async () => {
    const base = envelopeOf(good.manifestSha256).manifest;
    await expectRefusedByAll('SIZE_MISMATCH', () => deliver(forge({ version: 80, artifact: { ...base.artifact, length: base.artifact.length - 100 } })));
  });

  it('replay: an old signed desired state recorded earlier -> REPLAYED', async () => {
    await expectRefusedByAll('REPLAYED', async () => {
      for (const [id, msg] of oldDesired) await server.app.fleet.broker.publish(topics.desired(id), msg, { qos: 1, retain: true });
    });
  });

  it('revoked key: a manifest signed by a key the root has revoked -> REVOKED_KEY', async () => {
    const k1 = targets();
    // devices are told to run the good bundle again (the last desired state was an attack)
    await assign(server, good.manifestSha256, ids());
    await fleet.waitAll((s) => s.state === 'active', 30_000);
    const rot = await server.app.inject({ method: 'POST', url: '/v1/keys/rotate' });
    expect(rot.statusCode, rot.body).toBe(201);
    const rev = await server.app.inject({ method: 'POST', url: `/v1/keys/${k1.keyId}/revoke` });
    expect(rev.statusCode, rev.body).toBe(200);
    // devices move to the re-signed bundle (same bytes, new version, new key): that is the good model now
    const resigned = rev.json().resignedBundles.find((b: { fromManifestSha256: string }) => b.fromManifestSha256 === good.manifestSha256);
    expect(resigned).toBeTruthy();
    await fleet.waitAll((s) => s.state === 'active' && s.active?.manifestSha256 === resigned.manifestSha256, 30_000);
    good = { ...good, manifestSha256: resigned.manifestSha256, version: resigned.version };
    await expectRefusedByAll('REVOKED_KEY', () => deliver(forge({ version: 200 }, k1)));
  });
});

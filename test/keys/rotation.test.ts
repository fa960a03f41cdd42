// Key rotation and revocation seen from real agents that pinned only the root key: a rotated key is
// accepted with no reinstall, both keys verify during rotation, a revoked or unknown key is refused,
// and the revocation sticks (an older key set is refused too). Plus key file permissions and the
// promise that the key API never shows a private key.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { b64, generateKeyPair, keyIdOf } from '../../shared/crypto.ts';
import { signDocument } from '../../shared/envelope.ts';
import type { DesiredMessage, DesiredState, Manifest } from '../../shared/messages.ts';
import { topics } from '../../shared/topics.ts';
import type { SimulatedFleet } from '../../firmware-sim/fleet.ts';
import { readKeyFile } from '../../server/keys/key-files.ts';
import { assign, pushBundle, startFleet, startTestServer, type TestServer } from '../helpers/harness.ts';
import { tinyClassifier } from '../helpers/tiny-models.ts';

describe('signing key rotation and revocation, end to end', () => {
  let server: TestServer;
  let fleet: SimulatedFleet;
  let keyDir: string;
  let k1: string;
  let k2: string;
  let oldBundle: Awaited<ReturnType<typeof pushBundle>>;
  let oldKeysetEnvelope: DesiredMessage['keyset'];
  const ids = () => fleet.agents.map((a) => a.deviceId);
  const envelopeOf = (sha: string) => server.app.fleet.director.bundleEnvelope(sha).envelope;

  beforeAll(async () => {
    server = await startTestServer();
    keyDir = join(server.dir, 'server', 'keys');
    // no probation window: each step here installs at once (probation has its own tests)
    fleet = await startFleet(server, { count: 4, agentOverrides: { probationInferences: 0, probationSeconds: 0 } });
    k1 = server.app.fleet.keys.keyset.keys[0].keyId;
    oldBundle = await pushBundle(server, 'alpha', tinyClassifier(1));
  }, 60_000);

  afterAll(async () => {
    await fleet?.stop();
    await server?.close();
  });

  it('after rotate, agents that pinned only the root install a bundle signed by the new key', async () => {
    const res = await server.app.inject({ method: 'POST', url: '/v1/keys/rotate' });
    expect(res.statusCode, res.body).toBe(201);
    k2 = res.json().keyId;
    expect(k2).not.toBe(k1);
    expect(res.json()).toMatchObject({ applied: true, keysetVersion: 2 });
    const keys = (await server.app.inject({ method: 'GET', url: '/v1/keys' })).json();
    expect(keys.keyset.keys.map((k: { keyId: string }) => k.keyId)).toEqual([k1, k2]);
    oldKeysetEnvelope = keys.keysetEnvelope;

    const fresh = await pushBundle(server, 'beta', tinyClassifier(2));
    expect(envelopeOf(fresh.manifestSha256).keyId).toBe(k2);
    await assign(server, fresh.manifestSha256, ids());
    await fleet.waitAll((s) => s.state === 'active' && s.active?.manifestSha256 === fresh.manifestSha256, 30_000);
  });

  it('during rotation a bundle signed by the old key still verifies and installs', async () => {
    expect(envelopeOf(oldBundle.manifestSha256).keyId).toBe(k1);
    await assign(server, oldBundle.manifestSha256, ids());
    await fleet.waitAll((s) => s.state === 'active' && s.active?.manifestSha256 === oldBundle.manifestSha256, 30_000);
  });

  it('revoking the old key re-signs the bundle devices hold (new version, same bytes) and they move to it', async () => {
    const res = await server.app.inject({ method: 'POST', url: `/v1/keys/${k1}/revoke` });
    expect(res.statusCode, res.body).toBe(200);
    const body = res.json();
    expect(body).toMatchObject({ applied: true, keysetVersion: 3, revoked: [k1] });
    expect(body.resignedBundles).toHaveLength(1);
    const resigned = body.resignedBundles[0];
    expect(resigned).toMatchObject({ fromManifestSha256: oldBundle.manifestSha256, modelId: 'alpha', fromVersion: 1, version: 2, keyId: k2 });
    const manifest = JSON.parse(envelopeOf(resigned.manifestSha256).signed) as Manifest;
    expect(manifest.artifact).toEqual(oldBundle.manifest.artifact);
    await fleet.waitAll((s) => s.state === 'active' && s.active?.manifestSha256 === resigned.manifestSha256, 30_000);
    // the revoked key's private half is gone from the server's key folder
    expect(readdirSync(keyDir).some((n) => n.includes(k1))).toBe(false);
  });

  it('a manifest signed by the revoked key is refused with REVOKED_KEY', async () => {
    const before = fleet.agents.map((a) => a.active?.manifestSha256);
    const envelope = envelopeOf(oldBundle.manifestSha256);
    await server.app.fleet.director.assignEnvelope(envelope, { modelId: 'alpha', version: 1 }, ids());
    await fleet.waitAll((s) => s.state === 'rejected' && s.reason === 'REVOKED_KEY', 30_000);
    expect(fleet.agents.map((a) => a.active?.manifestSha256)).toEqual(before);
  });

  it('an older key set that still lists the revoked key is refused (KEYSET_ROLLBACK): the revocation sticks', async () => {
    // Replay what an attacker holding k1 could send: the v2 key set (k1 valid), a k1 manifest, and a
    // fresh director signature (k2, so only the key set is stale).
    const signer = readKeyFile(join(keyDir, `signing-${k2}.key`));
    const manifest = envelopeOf(oldBundle.manifestSha256);
    const agent = fleet.agents[0];
    const now = Date.now();
    const desired: DesiredState = {
      type: 'desired', deviceId: agent.deviceId, seq: 10_000, issuedAt: new Date(now).toISOString(), expires: new Date(now + 3600_000).toISOString(),
      modelId: 'alpha', version: 1, manifestSha256: oldBundle.manifestSha256,
    };
    const msg: DesiredMessage = { keyset: oldKeysetEnvelope, manifest, director: signDocument(desired, signer) };
    await server.app.fleet.broker.publish(topics.desired(agent.deviceId), JSON.stringify(msg), { qos: 1, retain: true });
    await fleet.waitAll((s, a) => a !== agent || (s.state === 'rejected' && s.reason === 'KEYSET_ROLLBACK'), 30_000);
  });

  it('a device that only ever refused a message still learns its newer key set: the old one is then a rollback', async () => {
    // a device enrolled after the revocation; its first message is refused (unknown key) but carries key set v3
    const late = await startFleet(server, { count: 1, idPrefix: 'late', agentOverrides: { probationInferences: 0, probationSeconds: 0 } });
    try {
      const agent = late.agents[0];
      const { manifest } = server.app.fleet.director.bundleEnvelope(oldBundle.manifestSha256);
      const rogue = generateKeyPair();
      const forged: Manifest = { ...manifest, version: 60, issuedAt: new Date().toISOString() };
      await server.app.fleet.director.assignEnvelope(signDocument(forged, { ...rogue, keyId: keyIdOf(rogue.publicKey) }), forged, [agent.deviceId]);
      await late.waitAll((s) => s.state === 'rejected' && s.reason === 'UNKNOWN_KEY', 30_000);

      // now the replay: key set v2 (k1 still valid there), a k1 manifest, a fresh director signature
      const signer = readKeyFile(join(keyDir, `signing-${k2}.key`));
      const now = Date.now();
      const desired: DesiredState = {
        type: 'desired', deviceId: agent.deviceId, seq: 20_000, issuedAt: new Date(now).toISOString(), expires: new Date(now + 3600_000).toISOString(),
        modelId: 'alpha', version: 1, manifestSha256: oldBundle.manifestSha256,
      };
      const msg: DesiredMessage = { keyset: oldKeysetEnvelope, manifest: envelopeOf(oldBundle.manifestSha256), director: signDocument(desired, signer) };
      await server.app.fleet.broker.publish(topics.desired(agent.deviceId), JSON.stringify(msg), { qos: 1, retain: true });
      await late.waitAll((s) => s.state === 'rejected' && s.reason === 'KEYSET_ROLLBACK', 30_000);
      expect(agent.active).toBeNull();
    } finally {
      await late.stop();
    }
  });

  it('a manifest signed by a key the root never listed is refused with UNKNOWN_KEY', async () => {
    const { manifest } = server.app.fleet.director.bundleEnvelope(oldBundle.manifestSha256);
    const rogue = generateKeyPair();
    const forged: Manifest = { ...manifest, version: 50, issuedAt: new Date().toISOString() };
    await server.app.fleet.director.assignEnvelope(signDocument(forged, { ...rogue, keyId: keyIdOf(rogue.publicKey) }), forged, ids());
    await fleet.waitAll((s) => s.state === 'rejected' && s.reason === 'UNKNOWN_KEY', 30_000);
  });

  it('revoking again, revoking an unknown key or the last key is refused with a stable code', async () => {
    const again = await server.app.inject({ method: 'POST', url: `/v1/keys/${k1}/revoke` });
    expect(again.statusCode).toBe(409);
    expect(again.json().error).toBe('FLEET_ERR_KEY_REVOKED');
    const unknown = await server.app.inject({ method: 'POST', url: `/v1/keys/${'ab'.repeat(16)}/revoke` });
    expect(unknown.statusCode).toBe(404);
    expect(unknown.json().error).toBe('FLEET_ERR_KEY_NOT_FOUND');
    const bad = await server.app.inject({ method: 'POST', url: '/v1/keys/not-a-key/revoke' });
    expect(bad.statusCode).toBe(400);
    const last = await server.app.inject({ method: 'POST', url: `/v1/keys/${k2}/revoke` });
    expect(last.statusCode).toBe(409);
    expect(last.json().error).toBe('FLEET_ERR_LAST_KEY');
    expect((await server.app.inject({ method: 'GET', url: '/healthz' })).statusCode).toBe(200);
  });

  it('private key files are 0600 in a 0700 folder, and every key change is in the audit log', () => {
    expect(statSync(keyDir).mode & 0o777).toBe(0o700);
    const files = readdirSync(keyDir).filter((n) => n.endsWith('.key'));
    expect(files.sort()).toEqual(['root.key', `signing-${k2}.key`].sort());
    for (const f of files) expect(statSync(join(keyDir, f)).mode & 0o777, f).toBe(0o600);
    const actions = (server.app.fleet.db.prepare('SELECT action FROM audit_log ORDER BY id').all() as { action: string }[]).map((r) => r.action);
    expect(actions).toEqual(expect.arrayContaining(['keys.rotate', 'keys.revoke']));
  });

  it('GET /v1/keys never returns a private key', async () => {
    const body = (await server.app.inject({ method: 'GET', url: '/v1/keys' })).body;
    expect(body).not.toMatch(/seed|private/i);
    for (const f of readdirSync(keyDir).filter((n) => n.endsWith('.key'))) {
      const seed = JSON.parse(readFileSync(join(keyDir, f), 'utf8')).seed as string;
      expect(body).not.toContain(seed);
      expect(body).not.toContain(Buffer.from(seed, 'base64').toString('hex'));
    }
    expect(JSON.parse(body).root.publicKey).toBe(b64.encode(server.app.fleet.keys.rootPublicKey));
  });
});

// A bundle signed by a since-revoked key cannot be assigned: before, POST /v1/assignments answered 202
// and every device refused the bundle (REVOKED_KEY). Now the assignment route and campaign creation
// refuse it (409 FLEET_ERR_BUNDLE_KEY_REVOKED, naming the key and the re-sign route), nothing is
// stored or published, and the re-signed version installs on a real enrolled agent.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SimulatedFleet } from '../../firmware-sim/fleet.ts';
import { pushBundle, startFleet, startTestServer, type TestServer } from '../helpers/harness.ts';
import { tinyClassifier } from '../helpers/tiny-models.ts';

let server: TestServer;
let fleet: SimulatedFleet;
let k1: string;
let k2: string;
let old: Awaited<ReturnType<typeof pushBundle>>;
const ids = () => fleet.agents.map((a) => a.deviceId);
const count = (sql: string) => (server.app.fleet.db.prepare(sql).get() as { n: number }).n;
const snapshot = () => ({
  desired: count('SELECT COUNT(*) AS n FROM devices WHERE desired_json IS NOT NULL'),
  assignments: count('SELECT COUNT(*) AS n FROM device_assignments'),
  campaigns: count('SELECT COUNT(*) AS n FROM campaigns'),
  auditAssign: count("SELECT COUNT(*) AS n FROM audit_log WHERE action IN ('assignments.create', 'campaigns.create')"),
});

beforeAll(async () => {
  server = await startTestServer({ tls: true, config: { allowUnenrolledDevices: false } });
  fleet = await startFleet(server, { count: 2, idPrefix: 'rk', agentOverrides: { probationInferences: 0, probationSeconds: 0 } });
  k1 = server.app.fleet.keys.keyset.keys[0].keyId;
  old = await pushBundle(server, 'alpha', tinyClassifier(1));
  const rotated = await server.app.inject({ method: 'POST', url: '/v1/keys/rotate' });
  expect(rotated.statusCode, rotated.body).toBe(201);
  k2 = rotated.json().keyId;
  // no device holds the old bundle, so the revocation re-signs nothing: it stays signed by k1
  const revoked = await server.app.inject({ method: 'POST', url: `/v1/keys/${k1}/revoke` });
  expect(revoked.statusCode, revoked.body).toBe(200);
  expect(revoked.json().resignedBundles).toEqual([]);
}, 60_000);

afterAll(async () => {
  await fleet?.stop();
  await server?.close();
});

describe('assigning a bundle signed by a revoked key', () => {
  it('POST /v1/assignments: 409 FLEET_ERR_BUNDLE_KEY_REVOKED naming the key and the re-sign route; nothing stored or published', async () => {
    const before = snapshot();
    for (const payload of [{ manifestSha256: old.manifestSha256, deviceIds: ids() }, { manifestSha256: old.manifestSha256, all: true }]) {
      const res = await server.app.inject({ method: 'POST', url: '/v1/assignments', payload });
      expect(res.statusCode, res.body).toBe(409);
      const body = res.json();
      expect(body.error).toBe('FLEET_ERR_BUNDLE_KEY_REVOKED');
      expect(body.message).toContain(k1);
      expect(body.message).toContain(`/v1/bundles/${old.manifestSha256}/resign`);
      expect(body.details).toEqual({ keyId: k1, manifestSha256: old.manifestSha256, resign: `/v1/bundles/${old.manifestSha256}/resign` });
    }
    expect(snapshot()).toEqual(before);
    for (const a of fleet.agents) expect(a.lastStatus?.state).toBe('idle');
  });

  it('POST /v1/campaigns: the same 409, no campaign row', async () => {
    const before = snapshot();
    const res = await server.app.inject({ method: 'POST', url: '/v1/campaigns', payload: { manifestSha256: old.manifestSha256 } });
    expect(res.statusCode, res.body).toBe(409);
    expect(res.json().error).toBe('FLEET_ERR_BUNDLE_KEY_REVOKED');
    expect(res.json().message).toContain(k1);
    expect(snapshot()).toEqual(before);
  });

  it('re-signed as a new version (POST /v1/bundles/:sha/resign) it is assigned and installs on real agents', async () => {
    const res = await server.app.inject({ method: 'POST', url: `/v1/bundles/${old.manifestSha256}/resign` });
    expect(res.statusCode, res.body).toBe(201);
    const resigned = res.json();
    expect(resigned).toMatchObject({ modelId: 'alpha', version: 2, fromManifestSha256: old.manifestSha256, fromVersion: 1, keyId: k2 });
    expect(count("SELECT COUNT(*) AS n FROM audit_log WHERE action = 'bundles.resign'")).toBe(1);
    const a = await server.app.inject({ method: 'POST', url: '/v1/assignments', payload: { manifestSha256: resigned.manifestSha256, deviceIds: ids() } });
    expect(a.statusCode, a.body).toBe(202);
    await fleet.waitAll((s) => s.state === 'active' && s.active?.manifestSha256 === resigned.manifestSha256, 30_000);
    for (const agent of fleet.agents) expect(agent.active?.version).toBe(2);
  });

  it('a viewer cannot re-sign; an unknown bundle is 404', async () => {
    const viewer = await server.app.inject({ method: 'POST', url: '/v1/tokens', payload: { name: 'v', role: 'viewer' } });
    const res = await server.anonInject({ method: 'POST', url: `/v1/bundles/${old.manifestSha256}/resign`, headers: { authorization: `Bearer ${viewer.json().token}` } });
    expect(res.statusCode).toBe(403);
    const missing = await server.app.inject({ method: 'POST', url: `/v1/bundles/${'0'.repeat(64)}/resign` });
    expect(missing.statusCode).toBe(404);
    expect(missing.json().error).toBe('FLEET_ERR_BUNDLE_NOT_FOUND');
  });
});

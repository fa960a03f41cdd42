// Artifact access is decided from the server's own assignment records, never from what a device says
// it runs. The attack: a device never assigned anything asks for an artifact (403), publishes on its own
// status topic that it runs that bundle, and asks again. Before the fix it got 200 and the bytes, and the
// device list showed it running the model. Real broker, real SQLite file, real signatures.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MqttClient } from 'mqtt';
import Database from 'better-sqlite3';
import { signDocument } from '../../shared/envelope.ts';
import { migrate } from '../../server/db/database.ts';
import { MIGRATIONS } from '../../server/db/migrations.ts';
import type { Envelope, Manifest } from '../../shared/messages.ts';
import { topics } from '../../shared/topics.ts';
import { assign, enrollDevices, pushBundle, startTestServer, type TestServer } from '../helpers/harness.ts';
import { tinyClassifier } from '../helpers/tiny-models.ts';
import { connectDevice, deviceGet, endClient, publishAsync, waitFor } from './helpers.ts';

let server: TestServer;
let secrets: Map<string, string>;
let v1: Awaited<ReturnType<typeof pushBundle>>;
let v2: Awaited<ReturnType<typeof pushBundle>>;
const open: MqttClient[] = [];
const ids = ['intruder', 'honest', 'golden-dev'];

/** over HTTPS, pinned to the server's CA, as a device asks */
const get = (sha: string, deviceId: string) => deviceGet(server, `/v1/artifacts/${sha}`, { authorization: `Bearer ${secrets.get(deviceId)}` });
const statusCount = (deviceId: string) => (server.app.fleet.db.prepare('SELECT COUNT(*) AS n FROM status_events WHERE device_id = ?').get(deviceId) as { n: number }).n;

/** The device says, on its own status topic (which the ACL lets it use), that it runs `bundle`. */
async function claimActive(deviceId: string, bundle: { manifestSha256: string; version: number }) {
  const c = await connectDevice(server, deviceId, secrets.get(deviceId)!);
  open.push(c);
  const before = statusCount(deviceId);
  await publishAsync(c, topics.status(deviceId), JSON.stringify({
    deviceId, ts: new Date().toISOString(), state: 'active', agentVersion: 'x',
    active: { modelId: 'tiny', version: bundle.version, manifestSha256: bundle.manifestSha256 },
  }));
  await waitFor(() => statusCount(deviceId) > before, 5000, `status of ${deviceId} stored`);
}

beforeAll(async () => {
  server = await startTestServer({ tls: true, config: { allowUnenrolledDevices: false } });
  secrets = await enrollDevices(server, ids);
  v1 = await pushBundle(server, 'tiny', tinyClassifier(1));
  v2 = await pushBundle(server, 'tiny', tinyClassifier(2));
}, 60_000);

afterAll(async () => {
  await Promise.all(open.map(endClient));
  await server?.close();
});

describe('artifact access follows server-side assignments only', () => {
  it('a device that claims to run a bundle it was never assigned still gets 403, and the claim is not shown as fact', async () => {
    const sha = v1.manifest.artifact.sha256;
    expect((await get(sha, 'intruder')).statusCode).toBe(403);
    await claimActive('intruder', v1);
    const again = await get(sha, 'intruder');
    expect(again.statusCode).toBe(403);
    expect(again.json().error).toBe('FLEET_ERR_FORBIDDEN');

    const view = (await server.app.inject({ method: 'GET', url: '/v1/devices/intruder' })).json();
    expect(view.active).toBeNull();
    expect(view.claimedActive).toEqual({ modelId: 'tiny', version: v1.version, manifestSha256: v1.manifestSha256, unverified: true });
    const listed = (await server.app.inject({ method: 'GET', url: '/v1/devices' })).json().devices.find((d: { deviceId: string }) => d.deviceId === 'intruder');
    expect(listed.active).toBeNull();
    // nothing the rollout engine reads (active_manifest_sha256 feeds "previous manifest" on revert) holds the claim
    const row = server.app.fleet.db.prepare('SELECT active_manifest_sha256 AS a FROM devices WHERE device_id = ?').get('intruder') as { a: string | null };
    expect(row.a).toBeNull();
  });

  it('an assigned device may fetch every blob of every manifest assigned to it, including earlier ones; the server confirms its active model', async () => {
    expect((await get(v1.manifest.artifact.sha256, 'honest')).statusCode).toBe(403);
    await assign(server, v1.manifestSha256, ['honest']);
    await assign(server, v2.manifestSha256, ['honest']);
    expect((await get(v2.manifest.artifact.sha256, 'honest')).statusCode).toBe(200);
    // re-assignment or revert back to v1 needs v1's bytes: it was assigned, so the record keeps it
    expect((await get(v1.manifest.artifact.sha256, 'honest')).statusCode).toBe(200);
    const rows = server.app.fleet.db.prepare('SELECT COUNT(DISTINCT manifest_sha256) AS n FROM device_assignments WHERE device_id = ?').get('honest') as { n: number };
    expect(rows.n).toBe(2);

    await claimActive('honest', v2);
    const view = (await server.app.inject({ method: 'GET', url: '/v1/devices/honest' })).json();
    expect(view.active).toEqual({ modelId: 'tiny', version: v2.version, manifestSha256: v2.manifestSha256 });
    expect(view.claimedActive).toBeNull();
    // the other device still gets nothing
    expect((await get(v2.manifest.artifact.sha256, 'intruder')).statusCode).toBe(403);
  });

  it('a manifest with a golden blob grants that blob too (manifestBlobs), only to the device it is assigned to', async () => {
    const golden = server.app.fleet.blobs.put(new TextEncoder().encode('golden vectors for the test'));
    server.app.fleet.db.prepare('INSERT OR IGNORE INTO artifacts (sha256, length, created_at) VALUES (?, ?, ?)').run(golden.sha256, golden.length, new Date().toISOString());
    const base = JSON.parse((JSON.parse(server.app.fleet.db.prepare('SELECT envelope_json FROM bundles WHERE manifest_sha256 = ?').pluck().get(v2.manifestSha256) as string) as Envelope).signed) as Manifest;
    const manifest: Manifest = { ...base, version: 90, healthCheck: { ...base.healthCheck, vectors: [], golden: { sha256: golden.sha256, length: golden.length, vectors: 1 } } };
    const envelope = signDocument(manifest, server.app.fleet.keys.signerFor('targets'));
    expect((await get(golden.sha256, 'golden-dev')).statusCode).toBe(403);
    await server.app.fleet.director.assignEnvelope(envelope, manifest, ['golden-dev']);
    expect((await get(golden.sha256, 'golden-dev')).statusCode).toBe(200);
    expect((await get(manifest.artifact.sha256, 'golden-dev')).statusCode).toBe(200);
    expect((await get(golden.sha256, 'intruder')).statusCode).toBe(403);
  });
});

describe('upgrading a store made before the assignment records', () => {
  it('migration 4 grants each device the blobs of its current desired manifest and turns unassigned active models into claims', () => {
    const db = new Database(':memory:');
    try {
      db.exec('CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)');
      for (const m of MIGRATIONS.filter((x) => x.version < 4)) {
        db.exec(m.sql);
        db.prepare('INSERT INTO schema_migrations VALUES (?, ?, ?)').run(m.version, m.name, 'then');
      }
      const manifest = { modelId: 'tiny', version: 3, artifact: { sha256: 'a'.repeat(64) }, healthCheck: { golden: { sha256: 'b'.repeat(64) } } };
      const desired = JSON.stringify({ manifest: { signed: JSON.stringify(manifest) } });
      const insert = db.prepare(`INSERT INTO devices (device_id, first_seen, last_seen, desired_seq, desired_manifest_sha256, desired_json,
        active_model_id, active_version, active_manifest_sha256) VALUES (?, 't', 't', 1, ?, ?, ?, ?, ?)`);
      insert.run('runs-desired', 'c'.repeat(64), desired, 'tiny', 3, 'c'.repeat(64));
      insert.run('claims-other', null, null, 'tiny', 9, 'd'.repeat(64));
      expect(migrate(db)).toBe(MIGRATIONS.filter((x) => x.version >= 4).length);
      const grants = db.prepare('SELECT device_id, blob_sha256, model_id, version FROM device_assignments ORDER BY blob_sha256').all();
      expect(grants).toEqual([
        { device_id: 'runs-desired', blob_sha256: 'a'.repeat(64), model_id: 'tiny', version: 3 },
        { device_id: 'runs-desired', blob_sha256: 'b'.repeat(64), model_id: 'tiny', version: 3 },
      ]);
      const rows = db.prepare('SELECT device_id, active_manifest_sha256 AS active, claimed_active_json AS claim FROM devices ORDER BY device_id').all();
      expect(rows).toEqual([
        { device_id: 'claims-other', active: null, claim: JSON.stringify({ modelId: 'tiny', version: 9, manifestSha256: 'd'.repeat(64) }) },
        { device_id: 'runs-desired', active: 'c'.repeat(64), claim: null },
      ]);
    } finally {
      db.close();
    }
  });
});

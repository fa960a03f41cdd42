// The director serializes the key set and manifest once per assignment call and splices each device's
// signed desired state in: the stored and published text must be exactly JSON.stringify of the message
// (what devices parse and what a restart republishes), for every device of a batch.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DesiredMessage } from '../../shared/messages.ts';
import { verifyDesired } from '../../shared/verify-desired.ts';
import { AGENT_VERSION } from '../../shared/version.ts';
import { assign, pushBundle, startTestServer, type TestServer } from '../helpers/harness.ts';
import { tinyClassifier } from '../helpers/tiny-models.ts';

describe('director payloads', () => {
  let server: TestServer;
  beforeAll(async () => { server = await startTestServer(); });
  afterAll(async () => { await server?.close(); });

  it('stores, for each device of a batch, the exact JSON of its signed message', async () => {
    const b = await pushBundle(server, 'tpl', tinyClassifier(3));
    const ids = Array.from({ length: 25 }, (_, i) => `tpl-${i}`);
    await assign(server, b.manifestSha256, ids);
    const rows = server.app.fleet.db.prepare(`SELECT device_id, desired_json FROM devices WHERE device_id LIKE 'tpl-%' ORDER BY device_id`).all() as { device_id: string; desired_json: string }[];
    expect(rows).toHaveLength(25);
    const seqs = new Set<number>();
    for (const r of rows) {
      const parsed = DesiredMessage.parse(JSON.parse(r.desired_json));
      expect(r.desired_json).toBe(JSON.stringify({ keyset: parsed.keyset, manifest: parsed.manifest, director: parsed.director }));
      const v = verifyDesired(parsed, { rootPublicKey: server.app.fleet.keys.rootPublicKey, keysetVersion: 0, lastSeq: 0, versionFloors: {}, timeFloor: 0 },
        { deviceId: r.device_id, hardware: 'generic', agentVersion: AGENT_VERSION }, Date.now());
      expect(v.desired.deviceId).toBe(r.device_id);
      expect(v.manifestSha256).toBe(b.manifestSha256);
      seqs.add(v.desired.seq);
    }
    expect(seqs.size).toBe(1); // first assignment of each device: seq 1 each, each signed for its own device id
  });
});

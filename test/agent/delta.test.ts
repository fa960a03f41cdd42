// Delta bundles end to end: a real server (delta made and offered in the signed desired state, served
// by the artifact route), a real agent over loopback MQTT and HTTP (rebuilds from its own slot, checks
// against the signed manifest, installs), real onnxruntime sessions. Each failure falls back to the full
// artifact with DELTA_FAILED and the device still ends up on the new model.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { FleetAgent } from '../../device-agent/agent.ts';
import type { DesiredMessage, DesiredState, Status } from '../../shared/messages.ts';
import { exportMlpToOnnx } from '../../server/training/digits.ts';
import { initMlp, type MlpWeights } from '../../server/training/mlp.ts';
import { seededRandom } from '../../server/bundles/golden-vectors.ts';
import { assign, pushBundle, startTestServer, type TestServer } from '../helpers/harness.ts';
import { waitFor } from '../helpers/wait.ts';
import { outcome, startAgent } from './fixture.ts';

const meta = { seed: 1, heldOutAccuracy: 0.9 };
function withHead(w: MlpWeights, seed: number): MlpWeights {
  const r = seededRandom(seed);
  return { ...w, w2: w.w2.map((v) => v + (r() - 0.5) * 0.1), b2: w.b2.map((v) => v + (r() - 0.5) * 0.1) };
}

describe('delta bundles', () => {
  let server: TestServer;
  const agents: FleetAgent[] = [];
  beforeAll(async () => { server = await startTestServer(); }, 60_000);
  afterAll(async () => { for (const a of agents) await a.stop(); await server?.close(); });

  /** Artifact requests this agent makes (its own fetch, counted), and the bytes each returned. */
  function counting(): { fetch: typeof fetch; artifacts: string[]; bytes: number[] } {
    const artifacts: string[] = [], bytes: number[] = [];
    return {
      artifacts, bytes,
      fetch: async (input, init) => {
        const u = String(input);
        const res = await fetch(input, init);
        if (u.includes('/v1/artifacts/') && (init?.method ?? 'GET') === 'GET') { artifacts.push(u.split('/').pop()!); bytes.push(Number(res.headers.get('content-length'))); }
        return res;
      },
    };
  }
  const desiredOf = (deviceId: string): DesiredState => {
    const row = server.app.fleet.db.prepare('SELECT desired_json FROM devices WHERE device_id = ?').get(deviceId) as { desired_json: string };
    return JSON.parse((JSON.parse(row.desired_json) as DesiredMessage).director.signed) as DesiredState;
  };
  /** v1 installed and known to the server as the device's active model */
  async function onV1(deviceId: string, model: string, seed: number) {
    const w = initMlp(256, 128, 10, seed);
    const v1 = await pushBundle(server, model, exportMlpToOnnx(w, meta));
    const v2 = await pushBundle(server, model, exportMlpToOnnx(withHead(w, seed + 100), meta));
    // made when v2 was pushed (in the builder's thread), from the model's earlier version: nothing to build while assigning
    await server.app.fleet.deltas.idle();
    expect(server.app.fleet.db.prepare('SELECT COUNT(*) AS n FROM artifact_deltas WHERE base_sha256 = ? AND target_sha256 = ?').get(v1.manifest.artifact.sha256, v2.manifest.artifact.sha256)).toEqual({ n: 1 });
    const c = counting();
    const statuses: Status[] = [];
    const agent = await startAgent(server, deviceId, {}, { fetch: c.fetch });
    agents.push(agent);
    agent.on('status', (s: Status) => statuses.push(s));
    const done = outcome(agent, v1.manifestSha256);
    await assign(server, v1.manifestSha256, [deviceId]);
    expect((await done).state).toBe('active');
    expect(desiredOf(deviceId).delta).toBeUndefined(); // nothing to make a delta from
    await waitFor(() => (server.app.fleet.db.prepare('SELECT active_manifest_sha256 AS m FROM devices WHERE device_id = ?').get(deviceId) as { m: string | null }).m === v1.manifestSha256, 10_000, 'server knows v1 is active');
    return { agent, c, statuses, v1, v2 };
  }

  it('only the head changed: the device fetches a delta under 10% of the artifact, rebuilds it exactly and runs it', async () => {
    const { agent, c, statuses, v1, v2 } = await onV1('delta-1', 'dhead', 1);
    const done = outcome(agent, v2.manifestSha256);
    await assign(server, v2.manifestSha256, [agent.deviceId]);
    expect((await done).state).toBe('active');
    const offered = desiredOf(agent.deviceId).delta!;
    expect(offered.baseSha256).toBe(v1.manifest.artifact.sha256);
    expect(c.artifacts).toEqual([v1.manifest.artifact.sha256, offered.sha256]);
    expect(c.bytes).toEqual([v1.manifest.artifact.length, offered.length]);
    expect(offered.length / v2.manifest.artifact.length).toBeLessThan(0.1);
    expect(statuses.filter((s) => s.reason === 'DELTA_FAILED')).toEqual([]);
    const row = server.app.fleet.db.prepare('SELECT kind, delta_sha256 FROM artifact_deltas WHERE target_sha256 = ?').get(v2.manifest.artifact.sha256) as { kind: string; delta_sha256: string };
    expect(row).toEqual({ kind: 'model-aware', delta_sha256: offered.sha256 });
    // the slot holds the signed artifact byte for byte
    const state = JSON.parse(readFileSync(join(server.dir, 'agents', agent.deviceId, 'state.json'), 'utf8')) as { active: 'a' | 'b' };
    const { createHash } = await import('node:crypto');
    expect(createHash('sha256').update(readFileSync(join(server.dir, 'agents', agent.deviceId, 'slots', `${state.active}.onnx`))).digest('hex')).toBe(v2.manifest.artifact.sha256);
    expect(agent.active?.manifestSha256).toBe(v2.manifestSha256);
    const out = await agent.infer({ input: { data: new Float32Array(256).fill(0.5), dims: [1, 256] } });
    expect(out.probabilities.dims).toEqual([1, 10]);
  });

  it('the base changed on disk: DELTA_FAILED, then the full artifact, and the device runs v2', async () => {
    const { agent, c, statuses, v1, v2 } = await onV1('delta-2', 'dbase', 2);
    const state = JSON.parse(readFileSync(join(server.dir, 'agents', agent.deviceId, 'state.json'), 'utf8')) as { active: 'a' | 'b' };
    const file = join(server.dir, 'agents', agent.deviceId, 'slots', `${state.active}.onnx`);
    const bytes = readFileSync(file); bytes[bytes.length - 1] ^= 0xff; writeFileSync(file, bytes);
    const done = outcome(agent, v2.manifestSha256);
    await assign(server, v2.manifestSha256, [agent.deviceId]);
    expect((await done).state).toBe('active');
    const offered = desiredOf(agent.deviceId).delta!;
    expect(c.artifacts).toEqual([v1.manifest.artifact.sha256, offered.sha256, v2.manifest.artifact.sha256]);
    const failed = statuses.filter((s) => s.reason === 'DELTA_FAILED');
    expect(failed.map((s) => [s.state, s.manifestSha256])).toEqual([['downloading', v2.manifestSha256]]);
    expect(failed[0].detail).toMatch(/^base changed on disk/);
    expect(agent.active?.manifestSha256).toBe(v2.manifestSha256);
  });

  it('a delta tampered with on the server: refused by its signed SHA-256 before it is read, then the full artifact', async () => {
    const { agent, c, statuses, v1, v2 } = await onV1('delta-3', 'dtamper', 3);
    // the delta made when v2 was pushed: damage the stored blob
    const offer = (await server.app.fleet.deltas.offer(v1.manifest.artifact.sha256, v2.manifest.artifact.sha256))!;
    const blob = join(server.dir, 'server', 'blobs', offer.sha256);
    const bytes = readFileSync(blob); bytes[bytes.length - 5] ^= 0x01; writeFileSync(blob, bytes);
    const done = outcome(agent, v2.manifestSha256);
    await assign(server, v2.manifestSha256, [agent.deviceId]);
    expect((await done).state).toBe('active');
    expect(c.artifacts).toEqual([v1.manifest.artifact.sha256, offer.sha256, v2.manifest.artifact.sha256]);
    const failed = statuses.filter((s) => s.reason === 'DELTA_FAILED');
    expect(failed).toHaveLength(1);
    expect(failed[0].detail).toMatch(/^the delta could not be downloaded: artifact SHA-256/);
    expect(agent.active?.manifestSha256).toBe(v2.manifestSha256);
  });

  it('the server stores the DELTA_FAILED report, and offers no delta when deltaMaxFraction makes it not worth it', async () => {
    await waitFor(() => !!server.app.fleet.db.prepare("SELECT 1 FROM status_events WHERE device_id = 'delta-2' AND reason = 'DELTA_FAILED'").get(), 10_000, 'DELTA_FAILED stored');
    const strict = await startTestServer({ config: { deltaMaxFraction: 0.001 } });
    try {
      const w = initMlp(256, 128, 10, 5);
      const v1 = await pushBundle(strict, 'dfrac', exportMlpToOnnx(w, meta));
      const v2 = await pushBundle(strict, 'dfrac', exportMlpToOnnx(withHead(w, 105), meta));
      const db = strict.app.fleet.db;
      db.prepare(`INSERT INTO devices (device_id, first_seen, last_seen, active_manifest_sha256) VALUES ('frac-1', 'x', 'x', ?)`).run(v1.manifestSha256);
      await assign(strict, v2.manifestSha256, ['frac-1']);
      const row = db.prepare('SELECT desired_json FROM devices WHERE device_id = ?').get('frac-1') as { desired_json: string };
      expect((JSON.parse((JSON.parse(row.desired_json) as DesiredMessage).director.signed) as DesiredState).delta).toBeUndefined();
      expect(db.prepare('SELECT delta_sha256 FROM artifact_deltas').all()).toEqual([{ delta_sha256: null }]);
    } finally {
      await strict.close();
    }
  });
});

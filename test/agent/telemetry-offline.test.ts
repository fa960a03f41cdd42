// Telemetry from a device that is offline for a while (and restarted meanwhile) arrives after it
// reconnects, each window stored exactly once; windows carry drift histograms over the baseline's
// bins; presence goes offline through the last will when the link dies.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { FleetAgent } from '../../device-agent/agent.ts';
import { parseAgentConfig } from '../../device-agent/config.ts';
import type { Feeds } from '../../runtime/onnx-session.ts';
import type { Telemetry } from '../../shared/messages.ts';
import { pushBundle, startTestServer, type TestServer } from '../helpers/harness.ts';
import { tinyClassifier } from '../helpers/tiny-models.ts';
import { assignSigned, manifestOf, settled, startAgent } from './fixture.ts';
import { CuttableLink } from './mqtt-link.ts';
import { waitFor } from '../helpers/wait.ts';

const feeds: Feeds = { x: { data: Float32Array.from([0.1, -0.4, 0.9, 0.3, -0.7, 0.2, 0.5, -0.1]), dims: [1, 8] } };

describe('telemetry across being offline', () => {
  let server: TestServer;
  let link: CuttableLink;
  let agent: FleetAgent | null = null;

  beforeAll(async () => {
    server = await startTestServer();
    link = new CuttableLink('127.0.0.1', Number(new URL(server.mqttUrl).port));
    await link.start();
  }, 60_000);

  afterAll(async () => {
    await agent?.stop();
    await link?.stop();
    await server?.close();
  });

  it('windows cut while offline, across a restart, are stored once each after the reconnect', async () => {
    const deviceId = 'teller-1';
    const sent: Telemetry[] = [];
    const opts = { mqttUrl: link.url, telemetryWindowMs: 100 };
    agent = await startAgent(server, deviceId, opts);
    agent.on('telemetry', (t: Telemetry) => sent.push(t));

    // a model whose signed manifest carries a drift baseline (values for the input, argmax for the output)
    const v1 = await pushBundle(server, 'tiny', tinyClassifier(1));
    const m = manifestOf(server, v1.manifestSha256);
    m.driftBaseline = {
      inputs: { x: { kind: 'values', edges: [-0.5, 0, 0.5], counts: [1, 1, 1, 1] } },
      outputs: { probs: { kind: 'argmax', edges: [], counts: [1, 1, 1, 1] } },
    };
    const sha = await assignSigned(server, m, [deviceId]);
    await settled(agent, sha, ['active']);
    for (let i = 0; i < 20; i++) await agent.infer(feeds);
    await waitFor(() => sent.some((t) => t.count > 0), 5000, 'a window with inferences');

    // offline: the broker sees the link die and publishes the will
    link.cut();
    const db = server.app.fleet.db;
    const online = () => (db.prepare('SELECT online FROM devices WHERE device_id = ?').get(deviceId) as { online: number } | undefined)?.online;
    await waitFor(() => online() === 0, 10_000, 'presence offline via the last will');
    const offlineFrom = sent.length;
    for (let i = 0; i < 10; i++) await agent.infer(feeds);
    await waitFor(() => sent.length >= offlineFrom + 4, 5000, 'windows while offline');
    expect(agent.outboxSize).toBeGreaterThanOrEqual(4);

    // restarted while still offline (so not through startAgent, which waits for a connection):
    // the outbox is on disk, not in mqtt.js's memory
    await agent.stop();
    agent = null;
    agent = new FleetAgent(parseAgentConfig({
      deviceId, dataDir: join(server.dir, 'agents', deviceId), mqttUrl: link.url, serverUrl: server.baseUrl, rootPublicKey: server.rootPublicKey,
      reconnectMinMs: 100, probationInferences: 0, probationSeconds: 0, telemetryWindowMs: 100,
    }));
    agent.on('telemetry', (t: Telemetry) => sent.push(t));
    await agent.start();
    for (let i = 0; i < 5; i++) await agent.infer(feeds);
    const beforeReconnect = sent.length;
    await waitFor(() => sent.length >= beforeReconnect + 3, 5000, 'windows after the restart');
    expect(agent.outboxSize).toBeGreaterThanOrEqual(7);

    // back online: everything is sent, acknowledged and removed from the outbox
    link.restore();
    await waitFor(() => agent!.outboxSize === 0 && online() === 1, 15_000, 'the outbox to drain');
    await agent.stop();
    agent = null;
    await server.app.fleet.ingest.telemetry.flush();

    const rows = db.prepare('SELECT seq, count, histograms_json FROM telemetry WHERE device_id = ? ORDER BY seq').all(deviceId) as { seq: number; count: number; histograms_json: string | null }[];
    const seqs = rows.map((r) => r.seq);
    expect(new Set(seqs).size).toBe(seqs.length);
    // every window cut (plus the one each stop() saved) is there
    for (const t of sent) expect(seqs).toContain(t.seq);
    const total = rows.reduce((a, r) => a + r.count, 0);
    expect(total).toBe(35);
    // drift material: the input's sampled values and the output's argmax over the baseline's bins
    const withHist = rows.filter((r) => r.count > 0 && r.histograms_json).map((r) => JSON.parse(r.histograms_json!));
    expect(withHist.length).toBeGreaterThan(0);
    const argmax = withHist.reduce((a, h) => a + h.outputs.probs.counts.reduce((x: number, y: number) => x + y, 0), 0);
    expect(argmax).toBe(35);
    const values = withHist.reduce((a, h) => a + h.inputs.x.counts.reduce((x: number, y: number) => x + y, 0), 0);
    expect(values).toBe(35 * 8);
    expect(withHist[0].inputs.x.counts).toHaveLength(4);
  });
});

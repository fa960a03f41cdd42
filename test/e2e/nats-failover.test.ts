// Failover on a 3-node NATS JetStream cluster (MQTT listener, streams replicated on all three nodes):
// during a staged campaign one node is SIGKILLed and later started again. Devices spread over the three
// nodes (each lists all three, starting at its own) reconnect to the others; every device ends on its
// desired state, every telemetry window a device sent is stored exactly once, the campaign completes,
// and no device installs the new version twice. The server is a client of the cluster, on another node
// than the one killed; its users file gives every device its own user and permissions.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SimulatedFleet } from '../../firmware-sim/fleet.ts';
import type { ExternalBroker } from '../../server/mqtt/external-bus.ts';
import { assign, pushBundle, startTestServer, type TestServer } from '../helpers/harness.ts';
import { startNatsCluster, type NatsCluster } from '../helpers/nats-cluster.ts';
import { tinyClassifier } from '../helpers/tiny-models.ts';
import { createCampaign, FAST_WAVES, getCampaign, tinyInputs, tinyReference, waitForCampaign, whyStopped } from '../helpers/campaigns.ts';
import { SimulatedFleet as Fleet } from '../../firmware-sim/fleet.ts';
import { waitFor } from '../helpers/wait.ts';
import { join } from 'node:path';

const N = 30;
const KILLED = 1; // node n2; the server connects to n1 first

describe('a staged campaign on a 3-node NATS cluster while a node dies', { timeout: 300_000 }, () => {
  let nats: NatsCluster;
  let server: TestServer;
  let fleet: SimulatedFleet;
  const sent = new Map<string, Set<number>>();
  const count = (sql: string, ...args: unknown[]) => (server.app.fleet.db.prepare(sql).get(...args) as { n: number }).n;

  beforeAll(async () => {
    nats = await startNatsCluster();
    server = await startTestServer({ config: {
      brokerMode: 'external', brokerUrls: nats.urls, brokerUsername: nats.serverUser, brokerPassword: nats.serverPassword,
      brokerClientId: `fleet-server-${Math.random().toString(36).slice(2)}`, brokerResyncSeconds: 5,
      brokerDeviceAuth: 'nats', natsUsersFile: nats.usersFile, natsPidFiles: nats.pidFiles,
    } });
    const ids = Array.from({ length: N }, (_, i) => `nf-${String(i).padStart(5, '0')}`);
    const r = await server.anonInject({ method: 'POST', url: '/v1/enroll', payload: { enrollmentToken: server.enrollmentToken, deviceIds: ids } });
    expect(r.statusCode, r.body).toBe(201);
    const secrets = new Map((r.json().devices as { deviceId: string; secret: string }[]).map((d) => [d.deviceId, d.secret]));
    const urls = nats.nodes.map((n) => n.mqttUrl);
    fleet = new Fleet({
      count: N, idPrefix: 'nf', baseDir: join(server.dir, 'devices'), mqttUrl: urls[0], serverUrl: server.baseUrl, rootPublicKey: server.rootPublicKey,
      credentials: (id) => secrets.get(id),
      // device i starts on node i % 3 and fails over to the next ones
      mqttUrlFor: (i) => [0, 1, 2].map((k) => urls[(i + k) % 3]).join(','),
      // QoS 0 subscriptions, as docs/brokers.md says for NATS: no JetStream consumer per device
      telemetryWindowMs: 250, agentOverrides: { reconnectMinMs: 200, reconnectMaxMs: 2000, mqttSubscribeQos: 0 },
      // a fixed simulated inference latency: the latency gate compares models, not this busy machine's noise
      faults: () => ({ latency: { baseMs: 20, factorByArtifact: {} }, brokenArtifacts: {} }),
    });
    await fleet.start();
    for (const a of fleet.agents) {
      sent.set(a.deviceId, new Set());
      a.on('telemetry', (t: { seq: number }) => sent.get(a.deviceId)!.add(t.seq));
    }
    const v1 = await pushBundle(server, 'tiny', tinyClassifier(1), { quantize: 'none', reference: tinyReference(), healthCheck: { latencyBudgetMs: 5000 } });
    await assign(server, v1.manifestSha256, fleet.agents.map((a) => a.deviceId));
    await fleet.waitAll((_s, a) => a.active?.manifestSha256 === v1.manifestSha256, 120_000);
    fleet.startWorkload({ ratePerSecond: 5, inputs: tinyInputs });
    await new Promise((res) => setTimeout(res, 1500));
  }, 240_000);

  afterAll(async () => {
    await fleet?.stop();
    await server?.close();
    await nats?.stop();
  }, 60_000);

  it('completes, with every device on the new version once and every telemetry window stored once', async () => {
    const v2 = await pushBundle(server, 'tiny', tinyClassifier(2), { quantize: 'none', reference: tinyReference(), healthCheck: { latencyBudgetMs: 5000 } });
    const c = await createCampaign(server, { manifestSha256: v2.manifestSha256, waves: FAST_WAVES });
    expect(c.status, JSON.stringify(c.body)).toBe(201);
    const id = c.body.campaignId as string;
    // kill a node once the first wave has moved on, while later waves are still to come
    await waitFor(async () => (await getCampaign(server, id)).wave >= 1, 120_000, 'campaign past its first wave');
    const onKilled = fleet.agents.filter((_a, i) => i % 3 === KILLED).map((a) => a.deviceId);
    await nats.kill(KILLED, 'SIGKILL');
    // those devices come back through the other two nodes
    await waitFor(() => count(`SELECT COUNT(*) AS n FROM devices WHERE online = 1 AND device_id IN (${onKilled.map(() => '?').join(',')})`, ...onKilled) === onKilled.length, 60_000, 'devices of the killed node online again');
    const done = await waitForCampaign(server, id, ['completed', 'reverting', 'reverted', 'halted', 'aborted'], 180_000).catch(async (err: Error) => {
      // which devices are stuck, where they are, and what they hold, for the failure message
      const detail = await getCampaign(server, id);
      const stuck = detail.deviceList.filter((d) => d.state !== 'updated' && d.state !== 'pending').map((d) => {
        const i = fleet.agents.findIndex((a) => a.deviceId === d.deviceId);
        const a = fleet.agents[i];
        return { ...d, node: i % 3, connected: (a as unknown as { client?: { connected: boolean } }).client?.connected, active: a.active?.manifestSha256?.slice(0, 8),
          desired: server.app.fleet.db.prepare('SELECT desired_seq AS s FROM devices WHERE device_id = ?').get(d.deviceId) };
      });
      const bus = server.app.fleet.broker as ExternalBroker;
      throw new Error(`${err.message}\nstuck: ${JSON.stringify(stuck)}\nserver link: connects ${bus.connects}, ack timeouts ${bus.ackTimeouts}`);
    });
    expect(done.status, await whyStopped(server, id)).toBe('completed');
    await nats.start(KILLED); // and the node comes back into the cluster
    await nats.ready();

    // every device on its desired state, as it says itself and as the server stored it
    expect(fleet.agents.filter((a) => a.active?.manifestSha256 !== v2.manifestSha256).map((a) => a.deviceId)).toEqual([]);
    await waitFor(() => count('SELECT COUNT(*) AS n FROM devices WHERE active_manifest_sha256 = ?', v2.manifestSha256) === N, 30_000, 'server stored v2 for every device');
    // no device installed it twice: one stored 'active' report for v2 each, one download each
    const twice = server.app.fleet.db.prepare(`SELECT device_id, COUNT(*) AS n FROM status_events WHERE manifest_sha256 = ? AND state IN ('active', 'downloading') GROUP BY device_id, state HAVING n > 1`).all(v2.manifestSha256);
    expect(twice).toEqual([]);
    expect(count("SELECT COUNT(DISTINCT device_id) AS n FROM status_events WHERE manifest_sha256 = ? AND state = 'active'", v2.manifestSha256)).toBe(N);

    // telemetry: every window each device sent (up to now) is stored, and none twice
    fleet.stopWorkload();
    const snapshot = new Map([...sent].map(([d, seqs]) => [d, [...seqs]]));
    const storedSeqs = (d: string) => new Set((server.app.fleet.db.prepare('SELECT seq FROM telemetry WHERE device_id = ?').all(d) as { seq: number }[]).map((r) => r.seq));
    const missing = () => [...snapshot].flatMap(([d, seqs]) => { const have = storedSeqs(d); return seqs.filter((s) => !have.has(s)).map((s) => `${d}#${s}`); });
    await waitFor(() => missing().length === 0, 60_000, 'every telemetry window sent is stored');
    expect(count('SELECT COUNT(*) - COUNT(DISTINCT device_id || \' \' || seq) AS n FROM telemetry')).toBe(0);
    expect([...snapshot.values()].reduce((a, s) => a + s.length, 0)).toBeGreaterThan(N * 10);
    expect((server.app.fleet.broker as ExternalBroker).connects).toBeGreaterThanOrEqual(1);
  });
});

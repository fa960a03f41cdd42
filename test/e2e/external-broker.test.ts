// The server as a client of an external mosquitto (dynamic security kept in step by the server): a real
// agent that fails over from a dead broker URL to a live one, updates through the external broker,
// keeps its desired state across a broker restart, and a server whose link to the broker is cut loses
// nothing the devices sent meanwhile (its persistent session) and stores each message once.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MqttClient } from 'mqtt';
import type { FleetAgent } from '../../device-agent/agent.ts';
import { topics } from '../../shared/topics.ts';
import type { ExternalBroker } from '../../server/mqtt/external-bus.ts';
import { assign, pushBundle, startTestServer, type TestServer } from '../helpers/harness.ts';
import { freePort, startMosquitto, type Mosquitto } from '../helpers/mosquitto.ts';
import { tinyClassifier } from '../helpers/tiny-models.ts';
import { startAgent, outcome } from '../agent/fixture.ts';
import { endClient, publishAsync, tryConnect, waitFor } from '../security/helpers.ts';

let mosquitto: Mosquitto;
let server: TestServer;
let agent: FleetAgent | null = null;
const clients: MqttClient[] = [];
const secrets = new Map<string, string>();
const count = (sql: string, ...args: unknown[]) => (server.app.fleet.db.prepare(sql).get(...args) as { n: number }).n;

beforeAll(async () => {
  mosquitto = await startMosquitto();
  server = await startTestServer({ config: {
    brokerMode: 'external', brokerUrls: mosquitto.url, brokerUsername: mosquitto.adminUser, brokerPassword: mosquitto.adminPassword, brokerDeviceAuth: 'dynsec',
  } });
  const r = await server.anonInject({ method: 'POST', url: '/v1/enroll', payload: { enrollmentToken: server.enrollmentToken, deviceIds: ['ext-agent', 'ext-raw'] } });
  expect(r.statusCode, r.body).toBe(201);
  for (const d of r.json().devices as { deviceId: string; secret: string }[]) secrets.set(d.deviceId, d.secret);
}, 60_000);

afterAll(async () => {
  await agent?.stop();
  await Promise.all(clients.map(endClient));
  await server?.close();
  await mosquitto?.stop();
}, 30_000);

describe('an external mosquitto', () => {
  it('an agent given a dead broker URL first fails over to the live one and installs its assignment', async () => {
    const dead = await freePort(); // nothing listens there
    agent = await startAgent(server, 'ext-agent', { deviceSecret: secrets.get('ext-agent'), mqttUrl: `mqtt://127.0.0.1:${dead},${mosquitto.url}`, telemetryWindowMs: 200 });
    const v1 = await pushBundle(server, 'tiny', tinyClassifier(1));
    await assign(server, v1.manifestSha256, ['ext-agent']);
    expect((await outcome(agent, v1.manifestSha256, 30_000)).state).toBe('active');
    await waitFor(() => count("SELECT COUNT(*) AS n FROM devices WHERE device_id = 'ext-agent' AND online = 1") === 1, 10_000, 'presence stored online');
    expect(server.app.fleet.broker.connectedClients()).toBe(1);
  });

  it('an assignment made while the broker is down reaches the agent after the broker restarts', async () => {
    const bus = server.app.fleet.broker as ExternalBroker;
    const v2 = await pushBundle(server, 'tiny', tinyClassifier(2));
    const connectsBefore = bus.connects;
    let assigned: Promise<unknown> | null = null;
    // SIGTERM: mosquitto saves sessions and retained messages, and comes back on the same port
    await mosquitto.restart({ whileDown: async () => {
      await waitFor(() => !bus.client.connected, 10_000, 'server saw the broker go');
      assigned = assign(server, v2.manifestSha256, ['ext-agent']); // stored; its publish waits in the server's queue
      await new Promise((res) => setTimeout(res, 300));
    } });
    await waitFor(() => bus.connects > connectsBefore, 30_000, 'server reconnected to the broker');
    await assigned;
    expect((await outcome(agent!, v2.manifestSha256, 60_000)).state).toBe('active');
    // the server hears it through the broker too
    await waitFor(() => count("SELECT COUNT(*) AS n FROM devices WHERE device_id = 'ext-agent' AND active_manifest_sha256 = ?", v2.manifestSha256) === 1, 15_000, 'server stored the new active version');
  }, 120_000);

  it('telemetry is stored exactly once per window across the restart', async () => {
    await waitFor(() => count("SELECT COUNT(*) AS n FROM telemetry WHERE device_id = 'ext-agent'") >= 5, 20_000, 'telemetry stored');
    expect(count("SELECT COUNT(*) - COUNT(DISTINCT seq) AS n FROM telemetry WHERE device_id = 'ext-agent'")).toBe(0);
  });

  it('statuses sent while the server\'s own link is cut are kept by the broker (persistent session) and stored once each', async () => {
    const bus = server.app.fleet.broker as ExternalBroker;
    const r = await tryConnect(mosquitto.url, { clientId: 'ext-raw', username: 'ext-raw', password: secrets.get('ext-raw') });
    if (!r.ok) throw new Error(r.message);
    clients.push(r.client);
    const before = count("SELECT COUNT(*) AS n FROM status_events WHERE device_id = 'ext-raw'");
    const connectsBefore = bus.connects;
    bus.client.stream.destroy(); // the server's TCP link drops; mosquitto queues QoS 1 messages for its session
    await waitFor(() => !bus.client.connected, 5000, 'server link down');
    const N = 50;
    for (let seq = 1; seq <= N; seq++) {
      await publishAsync(r.client, topics.status('ext-raw'), JSON.stringify({ deviceId: 'ext-raw', ts: new Date().toISOString(), state: 'idle', active: null, agentVersion: 'x', seq }));
    }
    // the same messages again, as a device resends what it was not sure of: applied once
    for (let seq = 1; seq <= 10; seq++) {
      await publishAsync(r.client, topics.status('ext-raw'), JSON.stringify({ deviceId: 'ext-raw', ts: new Date().toISOString(), state: 'idle', active: null, agentVersion: 'x', seq }));
    }
    await waitFor(() => bus.connects > connectsBefore, 30_000, 'server reconnected');
    await waitFor(() => count("SELECT COUNT(*) AS n FROM status_events WHERE device_id = 'ext-raw'") >= before + N, 15_000, 'every status stored');
    await new Promise((res) => setTimeout(res, 300));
    expect(count("SELECT COUNT(*) AS n FROM status_events WHERE device_id = 'ext-raw'")).toBe(before + N);
    expect(server.app.fleet.ingest.counters.duplicates.status ?? 0).toBeGreaterThanOrEqual(10);
  }, 60_000);
});

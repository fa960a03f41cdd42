// The MQTT attacks, run against every broker mode: the embedded aedes broker (the server decides each
// CONNECT, PUBLISH and SUBSCRIBE) and an external mosquitto whose dynamic security plugin the server
// keeps in step (mosquitto decides, from the clients and roles the server gave it). No or wrong
// credentials, another device's topics, `#` and `$SYS`, client-id takeover, oversized payloads, a revoked
// device, rotation; and a 3-node NATS JetStream cluster whose users file the server writes and reloads.
// Where the brokers differ by design the test names the exact outcome of each: aedes disconnects a
// client that publishes where it may not; mosquitto and NATS (MQTT 3.1.1 has no negative PUBACK) drop
// the message and keep the connection. In every mode nothing of it is stored. NATS 2.9 does not bind a
// user to a client id: a device with valid credentials can connect under another device's client id
// and so end that device's connection (a denial of service; the test pins down that it gets none of
// that device's messages and cannot publish as it), and it does not limit MQTT payloads (the server
// drops oversized ones). The server's own client id on NATS is a random one (brokerClientId).
// (test/security/mqtt-attacks.test.ts has the embedded broker's full suite over TLS: floods, malformed packets, artifacts.)
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MqttClient } from 'mqtt';
import { topics } from '../../shared/topics.ts';
import type { ExternalBroker } from '../../server/mqtt/external-bus.ts';
import { startTestServer, type TestServer } from '../helpers/harness.ts';
import { mosquittoAvailable, startMosquitto, type Mosquitto } from '../helpers/mosquitto.ts';
import { natsAvailable, startNatsCluster, type NatsCluster } from '../helpers/nats-cluster.ts';
import { closesWithin, endClient, publishAsync, stillServing, subscribeAsync, tryConnect, waitFor } from './helpers.ts';

const MAX_PAYLOAD = 16 * 1024;
const ids = ['dev-a', 'dev-b', 'dev-c', 'dev-d'];
type Mode = 'embedded' | 'mosquitto' | 'nats';
const modes: Mode[] = ['embedded', 'mosquitto', 'nats'];
if (!mosquittoAvailable() || !natsAvailable()) throw new Error('mosquitto (with its dynamic security plugin) and nats-server are needed (apt-get install mosquitto nats-server; .ci/run installs them)');

describe.each(modes)('broker mode %s', (mode) => {
  let server: TestServer;
  let mosquitto: Mosquitto | null = null;
  let nats: NatsCluster | null = null;
  let url: string;
  const secrets = new Map<string, string>();
  const open: MqttClient[] = [];
  const secret = (id: string) => secrets.get(id)!;
  const status = (deviceId: string, seq: number) => JSON.stringify({ deviceId, ts: new Date().toISOString(), state: 'idle', active: null, agentVersion: 'x', seq });
  const statusCount = (deviceId: string) => (server.app.fleet.db.prepare('SELECT COUNT(*) AS n FROM status_events WHERE device_id = ?').get(deviceId) as { n: number }).n;
  let seq = 1;
  /** publish on its own status topic and wait until it is stored: everything the broker got before it was handled */
  const marker = async (c: MqttClient, id: string) => {
    const before = statusCount(id);
    await publishAsync(c, topics.status(id), status(id, seq++));
    await waitFor(() => statusCount(id) > before, 10_000, `${id}'s marker status stored`);
  };
  async function device(id: string, password = secret(id)): Promise<MqttClient> {
    let r = await tryConnect(url, { clientId: id, username: id, password });
    // NATS locks a client id's session while its previous connection is being closed across the cluster
    // ("another session is in use"): the new connection is closed; a device's backoff retries it
    for (let i = 0; mode === 'nats' && !r.ok && r.code === undefined && i < 5; i++) {
      await new Promise((res) => setTimeout(res, 300));
      r = await tryConnect(url, { clientId: id, username: id, password });
    }
    if (!r.ok) throw new Error(`${id} could not connect: ${r.message}`);
    open.push(r.client);
    return r.client;
  }
  const enroll = (deviceIds: string[]) => server.anonInject({ method: 'POST', url: '/v1/enroll', payload: { enrollmentToken: server.enrollmentToken, deviceIds } });

  beforeAll(async () => {
    if (mode === 'mosquitto') {
      // mosquitto's limit is on whole packets: the payload limit plus room for the topic and header
      mosquitto = await startMosquitto({ maxPacketBytes: MAX_PAYLOAD + 1024 });
      server = await startTestServer({ config: {
        maxMqttPayloadBytes: MAX_PAYLOAD, brokerMode: 'external', brokerUrls: mosquitto.url,
        brokerUsername: mosquitto.adminUser, brokerPassword: mosquitto.adminPassword, brokerDeviceAuth: 'dynsec',
      } });
      url = mosquitto.url;
    } else if (mode === 'nats') {
      nats = await startNatsCluster({ maxPayloadBytes: MAX_PAYLOAD + 1024 });
      server = await startTestServer({ config: {
        brokerClientId: `fleet-server-${Math.random().toString(36).slice(2)}`,
        maxMqttPayloadBytes: MAX_PAYLOAD, brokerMode: 'external', brokerUrls: nats.urls, brokerUsername: nats.serverUser, brokerPassword: nats.serverPassword,
        brokerDeviceAuth: 'nats', natsUsersFile: nats.usersFile, natsPidFiles: nats.pidFiles,
      } });
      url = nats.nodes[1].mqttUrl; // devices on another node than the server's
    } else {
      server = await startTestServer({ config: { maxMqttPayloadBytes: MAX_PAYLOAD } });
      url = server.mqttUrl;
    }
    const r = await enroll(ids);
    expect(r.statusCode, r.body).toBe(201);
    for (const d of r.json().devices as { deviceId: string; secret: string }[]) secrets.set(d.deviceId, d.secret);
  }, 60_000);

  afterAll(async () => {
    await Promise.all(open.map(endClient));
    await server?.close();
    await mosquitto?.stop();
    await nats?.stop();
  }, 30_000);

  it.each([
    ['no credentials', { clientId: 'dev-a' }],
    ['a wrong secret', { clientId: 'dev-a', username: 'dev-a', password: 'fleet_ds_' + 'A'.repeat(43) }],
    ['a password that is not a device secret', { clientId: 'dev-a', username: 'dev-a', password: 'hunter2' }],
    ['another device\'s secret', { clientId: 'dev-a', username: 'dev-a', password: '@b' }],
    ['its own secret under another client id', { clientId: 'dev-b', username: 'dev-b', password: '@a' }],
    ['an unenrolled device id', { clientId: 'dev-zzz', username: 'dev-zzz', password: '@a' }],
  ])('a CONNECT with %s is refused', async (_name, opts: { clientId: string; username?: string; password?: string }) => {
    const password = opts.password === '@a' ? secret('dev-a') : opts.password === '@b' ? secret('dev-b') : opts.password;
    const r = await tryConnect(url, { ...opts, password });
    expect(r.ok).toBe(false);
    // CONNACK 5 (not authorized) from mosquitto and NATS; aedes answers 2 (bad client id), 4 (bad credential) or 5 (none given)
    if (!r.ok) expect(mode === 'embedded' ? [2, 4, 5] : [5]).toContain(r.code);
    expect(await stillServing(server)).toBe(true);
  });

  it.each([
    ['another device\'s client id', 'dev-b'],
    ['the server\'s client id', 'fleet-server'],
  ])('its own credential under %s: refused, except on NATS (no client-id binding), where it gains nothing', async (_name, clientId) => {
    const r = await tryConnect(url, { clientId, username: 'dev-a', password: secret('dev-a'), clean: false });
    if (mode !== 'nats') {
      expect(r.ok).toBe(false);
      if (!r.ok) expect(mode === 'embedded' ? [4] : [5]).toContain(r.code);
      return;
    }
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    open.push(r.client);
    let got = 0;
    r.client.on('message', () => got++);
    // it inherited that client id's session, but its own permissions still apply
    expect(await subscribeAsync(r.client, topics.desired(clientId === 'fleet-server' ? 'dev-b' : clientId))).toBe(128);
    const forged = statusCount('dev-b');
    r.client.publish(topics.status('dev-b'), status('dev-b', 77_777), { qos: 1 });
    await new Promise((res) => setTimeout(res, 500));
    expect(statusCount('dev-b')).toBe(forged);
    expect(got).toBe(0);
    await endClient(r.client);
    // the server's own session (a random client id here) was not touched: a device's status still arrives
    const a = await device('dev-a');
    await marker(a, 'dev-a');
    await endClient(a);
  });

  it('a device with its own credential connects, and its status is stored exactly once', async () => {
    const c = await device('dev-a');
    const before = statusCount('dev-a');
    await marker(c, 'dev-a');
    await new Promise((r) => setTimeout(r, 200));
    expect(statusCount('dev-a')).toBe(before + 1);
  });

  it('a second connection with the client id but without the credential does not take the first over', async () => {
    const first = await device('dev-b');
    for (const password of [undefined, 'fleet_ds_' + 'B'.repeat(43), secret('dev-a')]) {
      const r = await tryConnect(url, { clientId: 'dev-b', username: password ? 'dev-b' : undefined, password });
      expect(r.ok).toBe(false);
    }
    expect(await closesWithin(first, 300)).toBe(false);
    await marker(first, 'dev-b');
  });

  it('publishing on another device\'s topics or a server topic: nothing stored (aedes disconnects; mosquitto and NATS drop the message)', async () => {
    for (const t of [topics.status('dev-b'), topics.telemetry('dev-b'), topics.presence('dev-b'), topics.desired('dev-b'), topics.desired('dev-d'), topics.freshness(), '$SYS/x', 'anything']) {
      const bStatus = statusCount('dev-b');
      const telemetryRows = (server.app.fleet.db.prepare('SELECT COUNT(*) AS n FROM telemetry').get() as { n: number }).n;
      const c = await device('dev-d');
      const closed = closesWithin(c, 3000);
      c.publish(t, t.endsWith('/status') ? status('dev-b', 9_999) : '{"deviceId":"dev-b"}', { qos: 1 });
      if (mode === 'embedded') {
        expect(await closed, t).toBe(true);
      } else {
        // the connection stays; the marker on its own topic is stored after the refused message was handled
        await marker(c, 'dev-d');
        expect(c.connected, t).toBe(true);
        endClient(c);
      }
      expect(statusCount('dev-b'), t).toBe(bStatus);
      expect((server.app.fleet.db.prepare('SELECT COUNT(*) AS n FROM telemetry').get() as { n: number }).n, t).toBe(telemetryRows);
    }
    // nobody else's retained desired state was replaced: dev-b's desired topic holds nothing
    const b = await device('dev-b');
    let got = 0;
    b.on('message', () => got++);
    expect(await subscribeAsync(b, topics.desired('dev-b'))).toBe(1);
    await new Promise((r) => setTimeout(r, 300));
    expect(got).toBe(0);
  });

  it('subscribing to #, $SYS, wildcards or another device\'s topics is refused (SUBACK 128); its own desired topic and freshness are granted', async () => {
    const c = await device('dev-d');
    for (const f of ['#', '$SYS/#', '$CONTROL/dynamic-security/#', 'fleet/v1/+/desired', 'fleet/v1/#', '+/+/+/status', topics.desired('dev-b'), topics.status('dev-b'), 'fleet/v1/dev-d/+']) {
      expect(await subscribeAsync(c, f), f).toBe(128);
    }
    expect(await subscribeAsync(c, topics.desired('dev-d'))).toBe(1);
    expect(await subscribeAsync(c, topics.freshness())).toBe(1);
  });

  it('a payload over the limit on its own topic: nothing stored (aedes and mosquitto disconnect; on NATS the server drops it)', async () => {
    const c = await device('dev-d');
    const before = statusCount('dev-d');
    const closed = closesWithin(c, mode === 'nats' ? 1000 : 5000);
    const dropped = mode === 'nats' ? (server.app.fleet.broker as ExternalBroker).oversizeDropped : 0;
    c.publish(topics.status('dev-d'), JSON.stringify({ deviceId: 'dev-d', pad: 'x'.repeat(4 * MAX_PAYLOAD) }), { qos: 1 });
    if (mode === 'nats') {
      // nats-server 2.9 forwards it whatever its max_payload; the server drops it unread and counts it
      await waitFor(() => (server.app.fleet.broker as ExternalBroker).oversizeDropped === dropped + 1, 10_000, 'oversized payload dropped by the server');
      expect(await closed).toBe(false);
      endClient(c);
    } else {
      expect(await closed).toBe(true);
    }
    expect(statusCount('dev-d')).toBe(before);
    const again = await device('dev-d');
    await marker(again, 'dev-d');
    expect(statusCount('dev-d')).toBe(before + 1);
  });

  it('a revoked device is cut off at once and cannot reconnect; a new secret works and the old one does not', async () => {
    const c = await device('dev-c');
    const closed = closesWithin(c, 5000);
    const res = await server.app.inject({ method: 'POST', url: '/v1/devices/dev-c/revoke' });
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json()).toMatchObject({ revoked: true, disconnected: true });
    expect(await closed).toBe(true);
    const again = await tryConnect(url, { clientId: 'dev-c', username: 'dev-c', password: secret('dev-c') });
    expect(again.ok).toBe(false);
    const issued = await server.app.inject({ method: 'POST', url: '/v1/devices/dev-c/credentials' });
    expect(issued.statusCode, issued.body).toBe(201);
    const fresh = await device('dev-c', issued.json().secret);
    await marker(fresh, 'dev-c');
    expect((await tryConnect(url, { clientId: 'dev-c', username: 'dev-c', password: secret('dev-c') })).ok).toBe(false);
    // rotating again ends the session that used the previous secret
    const dropped = closesWithin(fresh, 5000);
    const rotated = await server.app.inject({ method: 'POST', url: '/v1/devices/dev-c/credentials' });
    expect(rotated.statusCode).toBe(201);
    expect(await dropped).toBe(true);
    expect((await tryConnect(url, { clientId: 'dev-c', username: 'dev-c', password: issued.json().secret })).ok).toBe(false);
    await device('dev-c', rotated.json().secret);
  });

  it('an enrolled device cannot be enrolled again to take its identity over', async () => {
    const r = await enroll(['dev-b']);
    expect(r.statusCode).toBe(409);
    expect(r.json().error).toBe('FLEET_ERR_ALREADY_ENROLLED');
  });

  it.runIf(mode !== 'embedded')('key-pair enrollment is refused with a clear error (the broker checks passwords only), before the token is used', async () => {
    const made = await server.app.inject({ method: 'POST', url: '/v1/enrollment-tokens', payload: {} });
    const r = await server.anonInject({ method: 'POST', url: '/v1/enroll', payload: { enrollmentToken: made.json().token, devices: [{ deviceId: 'kp-1', publicKey: Buffer.alloc(32, 7).toString('base64') }] } });
    expect(r.statusCode).toBe(409);
    expect(r.json().error).toBe('FLEET_ERR_BROKER_NEEDS_SECRET');
    const ok = await server.anonInject({ method: 'POST', url: '/v1/enroll', payload: { enrollmentToken: made.json().token, deviceIds: ['kp-1'] } });
    expect(ok.statusCode, ok.body).toBe(201);
  });
});

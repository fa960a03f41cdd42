// The MQTT attacks, run against every broker mode: the embedded aedes broker (the server decides each
// CONNECT, PUBLISH and SUBSCRIBE) and an external mosquitto whose dynamic security plugin the server
// keeps in step (mosquitto decides, from the clients and roles the server gave it). No or wrong
// credentials, another device's topics, `#` and `$SYS`, client-id takeover, oversized payloads, a revoked
// device, rotation. Where the brokers differ by design the test names the exact outcome of each: aedes
// disconnects a client that publishes where it may not; mosquitto (MQTT 3.1.1 has no negative PUBACK)
// drops the message and keeps the connection. In both, nothing of it is stored.
// (test/security/mqtt-attacks.test.ts has the embedded broker's full suite over TLS: floods, malformed packets, artifacts.)
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MqttClient } from 'mqtt';
import { topics } from '../../shared/topics.ts';
import { startTestServer, type TestServer } from '../helpers/harness.ts';
import { mosquittoAvailable, startMosquitto, type Mosquitto } from '../helpers/mosquitto.ts';
import { closesWithin, endClient, publishAsync, stillServing, subscribeAsync, tryConnect, waitFor } from './helpers.ts';

const MAX_PAYLOAD = 16 * 1024;
const ids = ['dev-a', 'dev-b', 'dev-c', 'dev-d'];
type Mode = 'embedded' | 'mosquitto';
const modes: Mode[] = ['embedded', 'mosquitto'];
if (!mosquittoAvailable()) throw new Error('mosquitto with its dynamic security plugin is needed (apt-get install mosquitto; .ci/run installs it)');

describe.each(modes)('broker mode %s', (mode) => {
  let server: TestServer;
  let mosquitto: Mosquitto | null = null;
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
    const r = await tryConnect(url, { clientId: id, username: id, password });
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
  }, 30_000);

  it.each([
    ['no credentials', { clientId: 'dev-a' }],
    ['a wrong secret', { clientId: 'dev-a', username: 'dev-a', password: 'fleet_ds_' + 'A'.repeat(43) }],
    ['a password that is not a device secret', { clientId: 'dev-a', username: 'dev-a', password: 'hunter2' }],
    ['another device\'s secret', { clientId: 'dev-a', username: 'dev-a', password: '@b' }],
    ['its own secret under another client id', { clientId: 'dev-b', username: 'dev-b', password: '@a' }],
    ['its own secret and username under another client id', { clientId: 'dev-b', username: 'dev-a', password: '@a' }],
    ['an unenrolled device id', { clientId: 'dev-zzz', username: 'dev-zzz', password: '@a' }],
    ['the server\'s own client id without its password', { clientId: 'fleet-server', username: 'dev-a', password: '@a' }],
  ])('a CONNECT with %s is refused', async (_name, opts: { clientId: string; username?: string; password?: string }) => {
    const password = opts.password === '@a' ? secret('dev-a') : opts.password === '@b' ? secret('dev-b') : opts.password;
    const r = await tryConnect(url, { ...opts, password });
    expect(r.ok).toBe(false);
    // CONNACK 5 (not authorized) from mosquitto; aedes answers 2 (bad client id), 4 (bad credential) or 5 (none given)
    if (!r.ok) expect(mode === 'mosquitto' ? [5] : [2, 4, 5]).toContain(r.code);
    expect(await stillServing(server)).toBe(true);
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

  it('publishing on another device\'s topics or a server topic: nothing stored (aedes disconnects; mosquitto drops the message)', async () => {
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

  it('a payload over the limit on its own topic: disconnected, nothing stored', async () => {
    const c = await device('dev-d');
    const before = statusCount('dev-d');
    const closed = closesWithin(c, 5000);
    c.publish(topics.status('dev-d'), JSON.stringify({ deviceId: 'dev-d', pad: 'x'.repeat(4 * MAX_PAYLOAD) }), { qos: 1 });
    expect(await closed).toBe(true);
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

  it.runIf(mode === 'mosquitto')('key-pair enrollment is refused with a clear error (mosquitto checks passwords only), before the token is used', async () => {
    const made = await server.app.inject({ method: 'POST', url: '/v1/enrollment-tokens', payload: {} });
    const r = await server.anonInject({ method: 'POST', url: '/v1/enroll', payload: { enrollmentToken: made.json().token, devices: [{ deviceId: 'kp-1', publicKey: Buffer.alloc(32, 7).toString('base64') }] } });
    expect(r.statusCode).toBe(409);
    expect(r.json().error).toBe('FLEET_ERR_BROKER_NEEDS_SECRET');
    const ok = await server.anonInject({ method: 'POST', url: '/v1/enroll', payload: { enrollmentToken: made.json().token, deviceIds: ['kp-1'] } });
    expect(ok.statusCode, ok.body).toBe(201);
  });
});

// MQTT attacks on the embedded broker, over loopback: missing and wrong credentials, client-id takeover,
// other devices' topics, wildcard subscriptions, oversized / huge / malformed packets and payloads, a
// flood from one device, revocation; plus artifact downloads that need the device's own credential.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MqttClient } from 'mqtt';
import { topics } from '../../shared/topics.ts';
import { enrollDevices, pushBundle, startTestServer, type TestServer } from '../helpers/harness.ts';
import { tinyClassifier } from '../helpers/tiny-models.ts';
import {
  closesWithin, connectDevice, deviceGet, endClient, expectNothingLost, publishAsync, rawBrokerSocket, stillServing, storeCounts, subscribeAsync, tryConnect, waitFor,
} from './helpers.ts';

const MAX_PAYLOAD = 16 * 1024;
let server: TestServer;
let secrets: Map<string, string>;
const open: MqttClient[] = [];
const ids = ['dev-a', 'dev-b', 'dev-c', 'dev-d', 'dev-flood', 'dev-calm'];
const secret = (id: string) => secrets.get(id)!;
const status = (deviceId: string, state = 'idle') => JSON.stringify({ deviceId, ts: new Date().toISOString(), state, active: null, agentVersion: 'x' });
const statusCount = (deviceId: string) => (server.app.fleet.db.prepare('SELECT COUNT(*) AS n FROM status_events WHERE device_id = ?').get(deviceId) as { n: number }).n;
async function device(id: string): Promise<MqttClient> {
  const c = await connectDevice(server, id, secret(id));
  open.push(c);
  return c;
}

beforeAll(async () => {
  // over TLS, as a deployment runs: every attack goes through the MQTTS port and the HTTPS API
  server = await startTestServer({ tls: true, config: { allowUnenrolledDevices: false, maxMqttPayloadBytes: MAX_PAYLOAD, mqttRateLimit: { perSecond: 50, burst: 300 } } });
  secrets = await enrollDevices(server, ids);
}, 30_000);

afterAll(async () => {
  await Promise.all(open.map(endClient));
  await server?.close();
});

describe('connecting', () => {
  it.each([
    ['no credentials', { clientId: 'dev-a' }],
    ['a wrong secret', { clientId: 'dev-a', username: 'dev-a', password: 'fleet_ds_' + 'A'.repeat(43) }],
    ['a password that is not a device secret', { clientId: 'dev-a', username: 'dev-a', password: 'hunter2' }],
    ['another device\'s secret', { clientId: 'dev-a', username: 'dev-a', password: '@b' }],
    ['its own secret under another client id', { clientId: 'dev-b', username: 'dev-b', password: '@a' }],
    ['a username that is not the client id', { clientId: 'dev-a', username: 'dev-b', password: '@a' }],
    ['an unenrolled device id', { clientId: 'dev-zzz', username: 'dev-zzz', password: '@a' }],
    ['a client id that is not a device id', { clientId: '../x', username: '../x', password: '@a' }],
  ])('refused with %s', async (_name, opts: { clientId: string; username?: string; password?: string }) => {
    const password = opts.password === '@a' ? secret('dev-a') : opts.password === '@b' ? secret('dev-b') : opts.password;
    const r = await tryConnect(server, { ...opts, password });
    expect(r.ok).toBe(false);
    if (!r.ok) expect([2, 4, 5]).toContain(r.code);
    expect(await stillServing(server)).toBe(true);
  });

  it('a device with its own credential connects', async () => {
    const c = await device('dev-a');
    expect(c.connected).toBe(true);
  });

  it('a second connection with the client id but without the credential does not take the first over', async () => {
    const first = await device('dev-b');
    for (const password of [undefined, 'fleet_ds_' + 'B'.repeat(43), secret('dev-a')]) {
      const r = await tryConnect(server, { clientId: 'dev-b', username: password ? 'dev-b' : undefined, password });
      expect(r.ok).toBe(false);
    }
    expect(await closesWithin(first, 300)).toBe(false);
    const before = statusCount('dev-b');
    await publishAsync(first, topics.status('dev-b'), status('dev-b'));
    await waitFor(() => statusCount('dev-b') > before, 5000, 'status of the first connection stored');
  });

  it('a second connection that holds the credential does take over (MQTT session semantics)', async () => {
    const first = await device('dev-c');
    const closed = closesWithin(first, 3000);
    const second = await device('dev-c');
    expect(await closed).toBe(true);
    expect(second.connected).toBe(true);
  });
});

describe('topics', () => {
  it('publishing on another device\'s status, telemetry or presence topic: disconnected, nothing stored', async () => {
    for (const t of [topics.status('dev-b'), topics.presence('dev-b'), topics.telemetry('dev-b')]) {
      const before = storeCounts(server);
      const bStatus = statusCount('dev-b');
      const c = await device('dev-d');
      const closed = closesWithin(c, 3000);
      c.publish(t, status('dev-b', 'failed'), { qos: 1 });
      expect(await closed, t).toBe(true);
      await new Promise((r) => setTimeout(r, 50));
      expect(statusCount('dev-b')).toBe(bStatus);
      expect(expectNothingLost(before, storeCounts(server))).toEqual([]);
    }
  });

  it('publishing a desired state (server-only topic), even its own, or on $SYS: disconnected', async () => {
    for (const t of [topics.desired('dev-d'), topics.desired('dev-b'), '$SYS/fleet-broker/x', 'fleet/v1/dev-d/other', 'anything']) {
      const c = await device('dev-d');
      const closed = closesWithin(c, 3000);
      c.publish(t, '{}', { qos: 1 });
      expect(await closed, t).toBe(true);
    }
  });

  it('subscribing to #, $SYS, wildcards or another device\'s desired topic is refused (SUBACK 128); its own is granted', async () => {
    const c = await device('dev-d');
    for (const f of ['#', '$SYS/#', 'fleet/v1/+/desired', 'fleet/v1/#', topics.desired('dev-b'), topics.status('dev-b'), 'fleet/v1/dev-d/+']) {
      expect(await subscribeAsync(c, f), f).toBe(128);
    }
    expect(await subscribeAsync(c, topics.desired('dev-d'))).toBe(1);
  });
});

describe('payloads and packets', () => {
  it('a payload over maxMqttPayloadBytes on its own topic: disconnected, nothing stored', async () => {
    const c = await device('dev-d');
    const before = statusCount('dev-d');
    const closed = closesWithin(c, 3000);
    c.publish(topics.status('dev-d'), JSON.stringify({ pad: 'x'.repeat(MAX_PAYLOAD + 10) }), { qos: 1 });
    expect(await closed).toBe(true);
    expect(statusCount('dev-d')).toBe(before);
    expect(await stillServing(server)).toBe(true);
  });

  it('an 8 MiB packet is cut off as its header arrives, before the body is buffered', async () => {
    const c = await device('dev-d');
    const closed = closesWithin(c, 5000);
    c.publish(topics.telemetry('dev-d'), Buffer.alloc(8 * 1024 * 1024, 0x7b), { qos: 0 });
    expect(await closed).toBe(true);
    expect(await stillServing(server)).toBe(true);
  });

  it('malformed payloads on its own topics are dropped with the connection kept', async () => {
    const c = await device('dev-d');
    const ingest = server.app.fleet.ingest;
    const dropped = () => Object.values(ingest.counters.dropped).reduce((a, b) => a + b, 0);
    const before = dropped();
    const bad = ['', 'not json', '{', '[]', 'null', '{"deviceId":"dev-d"}', status('dev-b'), JSON.stringify({ deviceId: 'dev-d', seq: -1 }),
      '{"__proto__":{"polluted":1},"deviceId":"dev-d"}', '\u0000\u0001\u0002', JSON.stringify({ deviceId: 'dev-d', online: 'yes', ts: 'now' })];
    for (const p of bad) await publishAsync(c, topics.status('dev-d'), p);
    for (const p of bad) await publishAsync(c, topics.telemetry('dev-d'), p);
    for (const p of bad) await publishAsync(c, topics.presence('dev-d'), p);
    await waitFor(() => dropped() - before >= bad.length * 3, 5000, 'all malformed payloads dropped');
    expect(c.connected).toBe(true);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(await stillServing(server)).toBe(true);
  });

  it.each([
    ['garbage bytes', Buffer.from('GET / HTTP/1.1\r\n\r\n')],
    ['a bad remaining-length field', Buffer.from([0x30, 0xff, 0xff, 0xff, 0xff, 0x7f])],
    ['a CONNECT with a bogus protocol', Buffer.from([0x10, 0x0c, 0x00, 0x04, 0x58, 0x58, 0x58, 0x58, 0x04, 0x02, 0x00, 0x3c, 0x00, 0x00])],
    ['a PUBLISH before CONNECT', Buffer.from([0x30, 0x05, 0x00, 0x01, 0x61, 0x62, 0x63])],
  ])('%s: the socket is closed and the broker keeps serving', async (_name, bytes) => {
    const closed = await new Promise<boolean>((resolve) => {
      const s = rawBrokerSocket(server, () => s.write(bytes));
      const t = setTimeout(() => { s.destroy(); resolve(false); }, 3000);
      s.on('error', () => {});
      s.on('close', () => { clearTimeout(t); resolve(true); });
    });
    expect(closed).toBe(true);
    const ok = await device('dev-a');
    expect(ok.connected).toBe(true);
  });
});

describe('a flood from one device', () => {
  it('is cut off at its rate limit while another device keeps working', async () => {
    const flood = await device('dev-flood');
    const calm = await device('dev-calm');
    const calmBefore = statusCount('dev-calm');
    const closed = closesWithin(flood, 10_000);
    const t = topics.telemetry('dev-flood');
    for (let i = 0; i < 20_000 && flood.connected; i++) flood.publish(t, '{"flood":true}', { qos: 0 });
    expect(await closed).toBe(true);
    for (let i = 0; i < 5; i++) await publishAsync(calm, topics.status('dev-calm'), status('dev-calm'));
    await waitFor(() => statusCount('dev-calm') >= calmBefore + 5, 5000, 'calm device statuses stored');
    expect(calm.connected).toBe(true);
    expect(await stillServing(server)).toBe(true);
  });
});

describe('revocation and artifacts', () => {
  let bundle: Awaited<ReturnType<typeof pushBundle>>;
  beforeAll(async () => {
    bundle = await pushBundle(server, 'tiny', tinyClassifier(1));
  });
  const get = (sha: string, auth?: string) => deviceGet(server, `/v1/artifacts/${sha}`, auth ? { authorization: `Bearer ${auth}` } : {});

  it('an artifact needs a credential, and a device gets only what is assigned to it', async () => {
    const sha = bundle.manifest.artifact.sha256;
    expect((await get(sha)).statusCode).toBe(401);
    expect((await get(sha, 'fleet_ds_' + 'Q'.repeat(43))).statusCode).toBe(401);
    const refused = await get(sha, secret('dev-a'));
    expect(refused.statusCode).toBe(403);
    expect(refused.json().message).toMatch(/not assigned to device dev-a/);
    const a = await server.app.inject({ method: 'POST', url: '/v1/assignments', payload: { manifestSha256: bundle.manifestSha256, deviceIds: ['dev-a'] } });
    expect(a.statusCode).toBe(202);
    expect((await get(sha, secret('dev-a'))).statusCode).toBe(200);
    expect((await get(sha, secret('dev-b'))).statusCode).toBe(403);
    // a device credential opens nothing else
    for (const url of ['/v1/devices', '/v1/keys', `/v1/bundles/${bundle.manifestSha256}`]) {
      expect((await deviceGet(server, url, { authorization: `Bearer ${secret('dev-a')}` })).statusCode, url).toBe(403);
    }
    // an operator token may fetch any artifact
    expect((await get(sha, server.adminToken)).statusCode).toBe(200);
  });

  it('a revoked device is cut off at once: its connection drops, it cannot reconnect or download', async () => {
    const c = await device('dev-a');
    const closed = closesWithin(c, 2000);
    const res = await server.app.inject({ method: 'POST', url: '/v1/devices/dev-a/revoke' });
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json()).toMatchObject({ revoked: true, disconnected: true });
    expect(await closed).toBe(true);
    const again = await tryConnect(server, { clientId: 'dev-a', username: 'dev-a', password: secret('dev-a') });
    expect(again.ok).toBe(false);
    expect((await get(bundle.manifest.artifact.sha256, secret('dev-a'))).statusCode).toBe(401);
    // an admin issues a new credential (the operator-approved path); the new one works, the old one still not
    const issued = await server.app.inject({ method: 'POST', url: '/v1/devices/dev-a/credentials' });
    expect(issued.statusCode).toBe(201);
    const fresh = await tryConnect(server, { clientId: 'dev-a', username: 'dev-a', password: issued.json().secret });
    expect(fresh.ok).toBe(true);
    if (fresh.ok) open.push(fresh.client);
    expect((await tryConnect(server, { clientId: 'dev-a', username: 'dev-a', password: secret('dev-a') })).ok).toBe(false);
  });
});

describe('enrollment', () => {
  const enroll = (enrollmentToken: string, deviceIds: string[]) => server.anonInject({ method: 'POST', url: '/v1/enroll', payload: { enrollmentToken, deviceIds } });
  const makeToken = async (body: object) => {
    const r = await server.app.inject({ method: 'POST', url: '/v1/enrollment-tokens', payload: body });
    expect(r.statusCode, r.body).toBe(201);
    return r.json().token as string;
  };

  it('a one-time token enrolls one device once', async () => {
    const token = await makeToken({});
    const first = await enroll(token, ['new-1']);
    expect(first.statusCode).toBe(201);
    expect(first.json().devices[0].secret).toMatch(/^fleet_ds_/);
    expect((await enroll(token, ['new-2'])).statusCode).toBe(401);
  });

  it('an enrolled device cannot be enrolled again (no identity takeover with an enrollment token)', async () => {
    const token = await makeToken({ uses: 5 });
    const r = await enroll(token, ['dev-b']);
    expect(r.statusCode).toBe(409);
    expect(r.json().error).toBe('FLEET_ERR_ALREADY_ENROLLED');
    expect((await tryConnect(server, { clientId: 'dev-b', username: 'dev-b', password: 'fleet_ds_' + 'Z'.repeat(43) })).ok).toBe(false);
  });

  it('a token limited to an id prefix refuses other ids; unknown or revoked tokens are refused', async () => {
    const token = await makeToken({ uses: 5, idPrefix: 'cam-' });
    expect((await enroll(token, ['gw-1'])).statusCode).toBe(403);
    expect((await enroll(token, ['cam-1'])).statusCode).toBe(201);
    expect((await enroll('fleet_et_' + 'x'.repeat(43), ['cam-2'])).statusCode).toBe(401);
    const made = await server.app.inject({ method: 'POST', url: '/v1/enrollment-tokens', payload: { uses: 2 } });
    await server.app.inject({ method: 'POST', url: `/v1/enrollment-tokens/${made.json().tokenId}/revoke` });
    expect((await enroll(made.json().token, ['cam-3'])).statusCode).toBe(401);
  });
});

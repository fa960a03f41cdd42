// Device identity by key pair, against a real server (allowUnenrolledDevices off unless a describe tests
// that switch): devices register only an Ed25519 public key and prove themselves with short-lived tokens
// they sign. Each attack on the broker and on artifact downloads is refused with its exact reason (the
// server's 'refused' event and the 401 message), public keys and enrollment tokens are stored as
// claimed, and real agents enroll themselves and connect with tokens.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MqttClient } from 'mqtt';
import { readFileSync, statSync, existsSync, writeFileSync } from 'node:fs';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { FleetAgent } from '../../device-agent/agent.ts';
import { parseAgentConfig } from '../../device-agent/config.ts';
import { DEVICE_KEY_FILE, readDeviceKey, type DeviceKey } from '../../device-agent/identity.ts';
import { makeDeviceToken, newDeviceKeyPair, type TokenAudience } from '../../shared/device-token.ts';
import Database from 'better-sqlite3';
import { DeviceCredentials, type TokenRefused } from '../../server/auth/device-credentials.ts';
import { migrate } from '../../server/db/database.ts';
import { MIGRATIONS } from '../../server/db/migrations.ts';
import { sha256Hex } from '../../shared/crypto.ts';
import { assign, enrollKeys, pushBundle, startTestServer, tempDir, type TestServer } from '../helpers/harness.ts';
import { tinyClassifier } from '../helpers/tiny-models.ts';
import { endClient, tryConnect } from './helpers.ts';

const open: MqttClient[] = [];
afterAll(async () => { await Promise.all(open.splice(0).map(endClient)); });

function token(key: DeviceKey, deviceId: string, aud: TokenAudience, o: { at?: number; life?: number } = {}): string {
  return makeDeviceToken(key.privateKey, { deviceId, aud, nowMs: o.at ?? Date.now(), lifetimeSeconds: o.life ?? 300 });
}

/** Run an attempt and collect the reasons the server gave for the device tokens it refused meanwhile. */
async function refusals<T>(server: TestServer, attempt: () => Promise<T>): Promise<{ result: T; reasons: string[] }> {
  const reasons: string[] = [];
  const on = (r: TokenRefused) => reasons.push(r.reason);
  server.app.fleet.credentials.on('refused', on);
  try {
    return { result: await attempt(), reasons };
  } finally {
    server.app.fleet.credentials.off('refused', on);
  }
}

describe('key-pair identity, security on', () => {
  let server: TestServer;
  let keys: Map<string, DeviceKey>;
  let bundle: Awaited<ReturnType<typeof pushBundle>>;
  const ids = ['kp-a', 'kp-b', 'kp-c', 'kp-r'];
  const key = (id: string) => keys.get(id)!;
  const get = (sha: string, bearer?: string) => server.anonInject({ method: 'GET', url: `/v1/artifacts/${sha}`, headers: bearer ? { authorization: `Bearer ${bearer}` } : {} });

  beforeAll(async () => {
    server = await startTestServer();
    expect(server.app.fleet.config.allowUnenrolledDevices).toBe(false);
    keys = await enrollKeys(server, ids.map((deviceId) => ({ deviceId, dataDir: join(server.dir, 'devices', deviceId) })));
    bundle = await pushBundle(server, 'tiny', tinyClassifier(1));
    await assign(server, bundle.manifestSha256, ['kp-a', 'kp-r']);
    expect((await server.app.inject({ method: 'POST', url: '/v1/devices/kp-r/revoke' })).statusCode).toBe(200);
  }, 60_000);
  afterAll(async () => { await server?.close(); });

  it('its own fresh MQTT token connects (username = client id = device id)', async () => {
    const { result, reasons } = await refusals(server, () => tryConnect(server.mqttUrl, { clientId: 'kp-a', username: 'kp-a', password: token(key('kp-a'), 'kp-a', 'mqtt') }));
    expect(result.ok).toBe(true);
    expect(reasons).toEqual([]);
    if (result.ok) open.push(result.client);
  });

  const now = Date.now();
  it.each([
    ['an expired token (issued 20 min ago, 5 min life)', () => token(key('kp-a'), 'kp-a', 'mqtt', { at: now - 1_200_000 }), 'EXPIRED'],
    ['a token issued 10 min in the future', () => token(key('kp-a'), 'kp-a', 'mqtt', { at: now + 600_000 }), 'NOT_YET_VALID'],
    ['an artifacts token replayed on MQTT', () => token(key('kp-a'), 'kp-a', 'artifacts'), 'WRONG_AUDIENCE'],
    ['a token for kp-a signed by kp-b\'s key', () => token(key('kp-b'), 'kp-a', 'mqtt'), 'BAD_SIGNATURE'],
    ['a token signed by a key nobody registered', () => token(newDeviceKeyPair(), 'kp-a', 'mqtt'), 'BAD_SIGNATURE'],
    ['kp-a\'s token with its payload tampered (a day more)', () => {
      const [signed, sig] = token(key('kp-a'), 'kp-a', 'mqtt').split('.');
      const c = JSON.parse(Buffer.from(signed.slice(9), 'base64url').toString());
      c.exp += 86_400;
      return `fleet_dt_${Buffer.from(JSON.stringify(c)).toString('base64url')}.${sig}`;
    }, 'BAD_SIGNATURE'],
    ['kp-b\'s genuine token presented as kp-a', () => token(key('kp-b'), 'kp-b', 'mqtt'), 'WRONG_DEVICE'],
    ['a token with a one-day lifetime', () => token(key('kp-a'), 'kp-a', 'mqtt', { life: 86_400 }), 'LIFETIME_TOO_LONG'],
  ])('MQTT CONNECT as kp-a with %s: CONNACK 4, reason %s', async (_n, make, reason) => {
    const { result, reasons } = await refusals(server, () => tryConnect(server.mqttUrl, { clientId: 'kp-a', username: 'kp-a', password: make() }));
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.code).toBe(4);
    expect(reasons).toEqual([reason]);
  });

  it('a recorded CONNECT token played again is refused (REPLAYED), though it has not expired', async () => {
    const t = token(key('kp-b'), 'kp-b', 'mqtt');
    const first = await tryConnect(server.mqttUrl, { clientId: 'kp-b', username: 'kp-b', password: t });
    expect(first.ok).toBe(true);
    if (first.ok) await endClient(first.client);
    const { result, reasons } = await refusals(server, () => tryConnect(server.mqttUrl, { clientId: 'kp-b', username: 'kp-b', password: t }));
    expect(result.ok).toBe(false);
    expect(reasons).toEqual(['REPLAYED']);
  });

  it('a revoked device\'s fresh token is refused (REVOKED); a legacy secret or no password does not open a key-pair device', async () => {
    const { result, reasons } = await refusals(server, () => tryConnect(server.mqttUrl, { clientId: 'kp-r', username: 'kp-r', password: token(key('kp-r'), 'kp-r', 'mqtt') }));
    expect(result.ok).toBe(false);
    expect(reasons).toEqual(['REVOKED']);
    const secret = await tryConnect(server.mqttUrl, { clientId: 'kp-c', username: 'kp-c', password: 'fleet_ds_' + 'C'.repeat(43) });
    expect(secret.ok === false && secret.code).toBe(4);
    const none = await tryConnect(server.mqttUrl, { clientId: 'kp-c' });
    expect(none.ok === false && none.code).toBe(5);
  });

  it('artifact downloads: its own artifacts token gets the blob; each attack gets 401 with its reason, or 403 when not assigned', async () => {
    const sha = bundle.manifest.artifact.sha256;
    const own = await get(sha, token(key('kp-a'), 'kp-a', 'artifacts'));
    expect(own.statusCode).toBe(200);
    expect(sha256Hex(own.rawPayload)).toBe(sha);
    // the same token again: artifact tokens are good for their lifetime (a download resumes with Range)
    const t = token(key('kp-a'), 'kp-a', 'artifacts');
    expect((await get(sha, t)).statusCode).toBe(200);
    expect((await get(sha, t)).statusCode).toBe(200);
    const cases: [string, string, number, string | null][] = [
      ['an MQTT token', token(key('kp-a'), 'kp-a', 'mqtt'), 401, 'WRONG_AUDIENCE'],
      ['an expired token', token(key('kp-a'), 'kp-a', 'artifacts', { at: Date.now() - 1_200_000 }), 401, 'EXPIRED'],
      ['kp-a claimed with kp-b\'s key', token(key('kp-b'), 'kp-a', 'artifacts'), 401, 'BAD_SIGNATURE'],
      ['a revoked device (kp-r, assigned before revocation)', token(key('kp-r'), 'kp-r', 'artifacts'), 401, 'REVOKED'],
      ['kp-b\'s own genuine token (not assigned)', token(key('kp-b'), 'kp-b', 'artifacts'), 403, null],
    ];
    for (const [name, bearer, status, reason] of cases) {
      const { result, reasons } = await refusals(server, () => get(sha, bearer));
      expect(result.statusCode, name).toBe(status);
      if (reason) {
        expect(result.json().error, name).toBe('FLEET_ERR_UNAUTHENTICATED');
        expect(result.json().message, name).toContain(`(${reason})`);
        expect(reasons, name).toEqual([reason]);
      } else {
        expect(result.json().error, name).toBe('FLEET_ERR_FORBIDDEN');
      }
    }
    // a device token opens nothing but artifacts
    const devices = await server.anonInject({ method: 'GET', url: '/v1/devices', headers: { authorization: `Bearer ${token(key('kp-a'), 'kp-a', 'artifacts')}` } });
    expect(devices.statusCode).toBe(403);
  });

  it('stored as claimed: one ed25519 row per device holding the public key it sent and no secret; the enrollment token only as SHA-256; no private key anywhere', async () => {
    const db = server.app.fleet.db;
    const rows = db.prepare("SELECT device_id, kind, public_key, secret_sha256, revoked_at FROM device_credentials WHERE device_id LIKE 'kp-%' ORDER BY device_id").all() as { device_id: string; kind: string; public_key: string; secret_sha256: string | null; revoked_at: string | null }[];
    expect(rows.map((r) => [r.device_id, r.kind, r.public_key, r.secret_sha256, !!r.revoked_at])).toEqual(ids.map((id) => [id, 'ed25519', key(id).publicKey, null, id === 'kp-r']));
    db.pragma('wal_checkpoint(FULL)');
    const files = ['fleet.db', 'fleet.db-wal'].map((f) => join(server.dir, 'server', f)).filter(existsSync).map((f) => readFileSync(f));
    const et = server.enrollmentToken;
    expect(db.prepare('SELECT COUNT(*) FROM enrollment_tokens WHERE token_sha256 = ?').pluck().get(sha256Hex(et))).toBe(1);
    for (const id of ids) {
      const pem = readFileSync(join(server.dir, 'devices', id, DEVICE_KEY_FILE), 'utf8');
      const der = Buffer.from(pem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
      const seed = der.subarray(der.length - 32); // PKCS#8 Ed25519: the 32-byte seed ends the structure
      for (const f of files) {
        expect(f.includes(seed), `${id} seed`).toBe(false);
        expect(f.includes(Buffer.from(pem.split('\n')[1])), `${id} pem`).toBe(false);
      }
    }
    for (const f of files) {
      expect(f.includes(Buffer.from(et)), 'enrollment token').toBe(false);
      expect(f.includes(Buffer.from(et.slice('fleet_et_'.length))), 'enrollment token body').toBe(false);
    }
    // what the admin sees
    const view = await server.app.inject({ url: '/v1/devices/kp-a/credential' });
    expect(view.json()).toMatchObject({ deviceId: 'kp-a', enrolled: true, kind: 'ed25519', publicKey: key('kp-a').publicKey });
  });

  it('enrollment with public keys returns no secret; bad keys, reused keys and mixed forms are refused with a clear 4xx', async () => {
    const made = async (uses: number) => (await server.app.inject({ method: 'POST', url: '/v1/enrollment-tokens', payload: { uses } })).json().token as string;
    const enroll = (payload: object) => server.anonInject({ method: 'POST', url: '/v1/enroll', payload });
    const fresh = newDeviceKeyPair();
    const ok = await enroll({ enrollmentToken: await made(1), devices: [{ deviceId: 'kp-new', publicKey: fresh.publicKey }] });
    expect(ok.statusCode).toBe(201);
    expect(ok.json()).toEqual({ devices: [{ deviceId: 'kp-new', publicKey: fresh.publicKey }] });
    const t = await made(5);
    const reused = await enroll({ enrollmentToken: t, devices: [{ deviceId: 'kp-new2', publicKey: key('kp-b').publicKey }] });
    expect([reused.statusCode, reused.json().error]).toEqual([409, 'FLEET_ERR_KEY_IN_USE']);
    const bad = await enroll({ enrollmentToken: t, devices: [{ deviceId: 'kp-new3', publicKey: 'A'.repeat(44) }] });
    expect([bad.statusCode, bad.json().error]).toEqual([400, 'FLEET_ERR_VALIDATION']);
    expect(bad.json().message).toMatch(/publicKey/);
    const both = await enroll({ enrollmentToken: t, deviceIds: ['kp-x'], devices: [{ deviceId: 'kp-y', publicKey: newDeviceKeyPair().publicKey }] });
    expect([both.statusCode, both.json().error]).toEqual([400, 'FLEET_ERR_VALIDATION']);
    const neither = await enroll({ enrollmentToken: t });
    expect(neither.statusCode).toBe(400);
    const same = newDeviceKeyPair().publicKey;
    const twice = await enroll({ enrollmentToken: t, devices: [{ deviceId: 'kp-s1', publicKey: same }, { deviceId: 'kp-s2', publicKey: same }] });
    expect(twice.statusCode).toBe(400);
    // nothing refused used a use of the token
    expect(server.app.fleet.db.prepare('SELECT uses_left FROM enrollment_tokens WHERE token_sha256 = ?').pluck().get(sha256Hex(t))).toBe(5);
  });

  it('the operator-approved path registers a new public key: the old key stops working at once, the new one connects', async () => {
    const old = key('kp-c');
    const next = newDeviceKeyPair();
    const res = await server.app.inject({ method: 'POST', url: '/v1/devices/kp-c/credentials', payload: { publicKey: next.publicKey } });
    expect(res.statusCode).toBe(201);
    expect(res.json()).toEqual({ deviceId: 'kp-c', publicKey: next.publicKey });
    const { result, reasons } = await refusals(server, () => tryConnect(server.mqttUrl, { clientId: 'kp-c', username: 'kp-c', password: token(old, 'kp-c', 'mqtt') }));
    expect(result.ok).toBe(false);
    expect(reasons).toEqual(['BAD_SIGNATURE']);
    const now2 = await tryConnect(server.mqttUrl, { clientId: 'kp-c', username: 'kp-c', password: token({ privateKey: next.privateKey, publicKey: next.publicKey }, 'kp-c', 'mqtt') });
    expect(now2.ok).toBe(true);
    if (now2.ok) open.push(now2.client);
    const badKey = await server.app.inject({ method: 'POST', url: '/v1/devices/kp-c/credentials', payload: { publicKey: 'nope' } });
    expect([badKey.statusCode, badKey.json().error]).toEqual([400, 'FLEET_ERR_VALIDATION']);
    const taken = await server.app.inject({ method: 'POST', url: '/v1/devices/kp-c/credentials', payload: { publicKey: key('kp-a').publicKey } });
    expect([taken.statusCode, taken.json().error]).toEqual([409, 'FLEET_ERR_KEY_IN_USE']);
    expect(server.app.fleet.db.prepare("SELECT COUNT(*) FROM device_credentials WHERE device_id = 'kp-c'").pluck().get()).toBe(2);
  });

  it('a real agent enrolls itself on first start (enrollmentToken in its config): key file 0600, enrolled.json, connected with tokens, installs its assignment', async () => {
    const dataDir = join(server.dir, 'agents', 'kp-agent');
    const config = parseAgentConfig({
      deviceId: 'kp-agent', dataDir, mqttUrl: server.mqttUrl, serverUrl: server.baseUrl, rootPublicKey: server.rootPublicKey,
      enrollmentToken: server.enrollmentToken, reconnectMinMs: 100, probationInferences: 0, probationSeconds: 0,
    });
    const events: string[] = [];
    const agent = new FleetAgent(config, { log: (e) => events.push(e) });
    try {
      const connected = new Promise<void>((r) => agent.once('connected', () => r()));
      await agent.start();
      await connected;
      expect(events).toContain('enrolled');
      expect(statSync(join(dataDir, DEVICE_KEY_FILE)).mode & 0o777).toBe(0o600);
      expect(existsSync(join(dataDir, 'enrolled.json'))).toBe(true);
      const stored = server.app.fleet.credentials.status('kp-agent');
      expect(stored).toMatchObject({ enrolled: true, kind: 'ed25519', publicKey: readDeviceKey(dataDir)!.publicKey });
      await assign(server, bundle.manifestSha256, ['kp-agent']);
      const s = await agent.waitForStatus((st) => st.manifestSha256 === bundle.manifestSha256 && st.state === 'active', 20_000);
      expect(s.state).toBe('active');
    } finally {
      await agent.stop();
    }
    // started again: no second enrollment (it would be refused: already enrolled), same key
    const again = new FleetAgent(config, { log: (e) => events.push(e) });
    try {
      const connected = new Promise<void>((r) => again.once('connected', () => r()));
      await again.start();
      await connected;
      expect(events.filter((e) => e === 'enrolled')).toHaveLength(1);
      expect(again.active?.manifestSha256).toBe(bundle.manifestSha256);
    } finally {
      await again.stop();
    }
  }, 60_000);

  it('fleet-agent enroll --config FILE --token T (the documented command) makes the key 0600 and registers it; a second run is refused (409)', async () => {
    const dataDir = join(server.dir, 'agents', 'kp-cli');
    const configFile = join(server.dir, 'kp-cli.json');
    writeFileSync(configFile, JSON.stringify({ deviceId: 'kp-cli', dataDir, mqttUrl: server.mqttUrl, serverUrl: server.baseUrl, rootPublicKey: server.rootPublicKey }));
    const run = () => new Promise<{ code: number | null; out: string; err: string }>((resolve) => {
      const child = execFile(process.execPath, ['--import', 'tsx', 'device-agent/main.ts', 'enroll', '--config', configFile, '--token', server.enrollmentToken],
        { cwd: fileURLToPath(new URL('../..', import.meta.url)), timeout: 60_000 }, (_e, out, err) => resolve({ code: child.exitCode, out, err }));
    });
    const first = await run();
    expect(first.code, first.err).toBe(0);
    const key = readDeviceKey(dataDir)!;
    expect(JSON.parse(first.out.trim())).toEqual({ event: 'enrolled', deviceId: 'kp-cli', publicKey: key.publicKey });
    expect(statSync(join(dataDir, DEVICE_KEY_FILE)).mode & 0o777).toBe(0o600);
    expect(server.app.fleet.credentials.status('kp-cli')).toMatchObject({ kind: 'ed25519', publicKey: key.publicKey });
    const second = await run();
    expect(second.code).toBe(1);
    expect(second.err).toContain('FLEET_ERR_ALREADY_ENROLLED');
  }, 90_000);

  it('an agent whose clock is an hour fast is refused once (NOT_YET_VALID), learns the server\'s time and connects', async () => {
    const dataDir = join(server.dir, 'agents', 'kp-skew');
    await enrollKeys(server, [{ deviceId: 'kp-skew', dataDir }]);
    const events: { e: string; f: Record<string, unknown> }[] = [];
    const agent = new FleetAgent(parseAgentConfig({
      deviceId: 'kp-skew', dataDir, mqttUrl: server.mqttUrl, serverUrl: server.baseUrl, rootPublicKey: server.rootPublicKey, reconnectMinMs: 100,
    }), { now: () => Date.now() + 3_600_000, log: (e, f) => events.push({ e, f }) });
    try {
      const { reasons } = await refusals(server, async () => {
        const connected = new Promise<void>((r) => agent.once('connected', () => r()));
        await agent.start();
        await connected;
      });
      expect(reasons[0]).toBe('NOT_YET_VALID');
      const offset = events.find((x) => x.e === 'clock_offset')?.f.offsetMs as number;
      expect(Math.abs(offset + 3_600_000)).toBeLessThan(3000);
    } finally {
      await agent.stop();
    }
  }, 60_000);
});

describe('allowUnenrolledDevices on: an enrolled device must still present its own credential', () => {
  let server: TestServer;
  let keys: Map<string, DeviceKey>;
  let bundle: Awaited<ReturnType<typeof pushBundle>>;
  const key = (id: string) => keys.get(id)!;

  beforeAll(async () => {
    server = await startTestServer({ config: { allowUnenrolledDevices: true } });
    const dir = tempDir('fleet-devkeys-');
    keys = await enrollKeys(server, ['dv-1', 'dv-2'].map((deviceId) => ({ deviceId, dataDir: join(dir, deviceId) })));
    bundle = await pushBundle(server, 'tiny', tinyClassifier(1));
    await assign(server, bundle.manifestSha256, ['dv-1']);
  }, 60_000);
  afterAll(async () => { await server?.close(); });

  it.each([
    ['no credential at all', () => ({}), 5, []],
    ['an expired token', () => ({ username: 'dv-1', password: token(key('dv-1'), 'dv-1', 'mqtt', { at: Date.now() - 1_200_000 }) }), 4, ['EXPIRED']],
    ['dv-2\'s own genuine token', () => ({ username: 'dv-1', password: token(key('dv-2'), 'dv-2', 'mqtt') }), 4, ['WRONG_DEVICE']],
    ['a token for dv-1 signed by dv-2\'s key', () => ({ username: 'dv-1', password: token(key('dv-2'), 'dv-1', 'mqtt') }), 4, ['BAD_SIGNATURE']],
    ['a wrong legacy secret', () => ({ username: 'dv-1', password: 'fleet_ds_' + 'W'.repeat(43) }), 4, []],
  ])('enrolled dv-1 connecting with %s is refused', async (_n, opts, code, reasons) => {
    const r = await refusals(server, () => tryConnect(server.mqttUrl, { clientId: 'dv-1', ...opts() }));
    expect(r.result.ok).toBe(false);
    if (!r.result.ok) expect(r.result.code).toBe(code);
    expect(r.reasons).toEqual(reasons);
  });

  it('its own token connects, and a device id that never enrolled connects without one (what the switch is for)', async () => {
    const own = await tryConnect(server.mqttUrl, { clientId: 'dv-1', username: 'dv-1', password: token(key('dv-1'), 'dv-1', 'mqtt') });
    expect(own.ok).toBe(true);
    if (own.ok) open.push(own.client);
    const free = await tryConnect(server.mqttUrl, { clientId: 'dv-free' });
    expect(free.ok).toBe(true);
    if (free.ok) open.push(free.client);
  });

  it('its artifact is not served anonymously (403) nor on an expired token (401 EXPIRED); its own token gets it', async () => {
    const sha = bundle.manifest.artifact.sha256;
    const get = (bearer?: string) => server.anonInject({ method: 'GET', url: `/v1/artifacts/${sha}`, headers: bearer ? { authorization: `Bearer ${bearer}` } : {} });
    expect((await get()).statusCode).toBe(403);
    const expired = await get(token(key('dv-1'), 'dv-1', 'artifacts', { at: Date.now() - 1_200_000 }));
    expect([expired.statusCode, expired.json().message.includes('(EXPIRED)')]).toEqual([401, true]);
    expect((await get(token(key('dv-1'), 'dv-1', 'artifacts'))).statusCode).toBe(200);
  });
});

describe('upgrading a store made before key pairs', () => {
  it('migration 6 keeps every secret credential (active and revoked) as kind secret; they still verify, and keys can be added', () => {
    const dir = tempDir('fleet-mig6-');
    const db = new Database(join(dir, 'fleet.db'));
    try {
      db.exec('CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)');
      for (const m of MIGRATIONS.filter((x) => x.version <= 5)) {
        db.exec(m.sql);
        db.prepare('INSERT INTO schema_migrations VALUES (?, ?, ?)').run(m.version, m.name, new Date().toISOString());
      }
      const ins = db.prepare('INSERT INTO device_credentials (credential_id, device_id, secret_sha256, enrolled_via, created_at, revoked_at) VALUES (?, ?, ?, ?, ?, ?)');
      ins.run('c1', 'old-1', sha256Hex('fleet_ds_' + 'a'.repeat(43)), 'enrollment:t', '2026-01-01T00:00:00Z', null);
      ins.run('c2', 'old-2', sha256Hex('fleet_ds_' + 'b'.repeat(43)), 'enrollment:t', '2026-01-01T00:00:00Z', '2026-02-01T00:00:00Z');
      expect(migrate(db)).toBe(MIGRATIONS.length - 5);
      const rows = db.prepare('SELECT credential_id, device_id, kind, secret_sha256 IS NOT NULL AS s, public_key, revoked_at FROM device_credentials ORDER BY credential_id').all();
      expect(rows).toEqual([
        { credential_id: 'c1', device_id: 'old-1', kind: 'secret', s: 1, public_key: null, revoked_at: null },
        { credential_id: 'c2', device_id: 'old-2', kind: 'secret', s: 1, public_key: null, revoked_at: '2026-02-01T00:00:00Z' },
      ]);
      const creds = new DeviceCredentials(db);
      expect(creds.verify('old-1', 'fleet_ds_' + 'a'.repeat(43))).toBe(true);
      expect(creds.verify('old-2', 'fleet_ds_' + 'b'.repeat(43))).toBe(false);
      // one active credential per device still holds, and a key replaces a secret
      const kp = newDeviceKeyPair();
      creds.registerKey('old-1', kp.publicKey, 'admin:test');
      expect(creds.status('old-1')).toMatchObject({ kind: 'ed25519', publicKey: kp.publicKey });
      expect(creds.verify('old-1', 'fleet_ds_' + 'a'.repeat(43))).toBe(false);
      expect(creds.verifyToken(makeDeviceToken(kp.privateKey, { deviceId: 'old-1', aud: 'mqtt', nowMs: Date.now(), lifetimeSeconds: 300 }), 'mqtt', 'old-1').ok).toBe(true);
      expect(() => db.prepare("INSERT INTO device_credentials (credential_id, device_id, kind, enrolled_via, created_at) VALUES ('c9', 'x', 'ed25519', 'v', 't')").run()).toThrow(/CHECK/);
    } finally {
      db.close();
    }
  });
});

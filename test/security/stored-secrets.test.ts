// Security claims tested with security on. (1) Device secrets and enrollment tokens are stored hashed:
// the SQLite database file (and its WAL) and every row of every table hold no plaintext secret, no
// secret body without its prefix, and not the 32 random bytes; the SHA-256 digest is what is kept.
// (2) With allowUnenrolledDevices (development), an enrolled device must still present its own secret:
// MQTT without or with a wrong secret is refused, its artifacts are not served anonymously, and a
// revoked device does not become "unenrolled".
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MqttClient } from 'mqtt';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { sha256Hex } from '../../shared/crypto.ts';
import { assign, enrollDevices, pushBundle, startTestServer, type TestServer } from '../helpers/harness.ts';
import { tinyClassifier } from '../helpers/tiny-models.ts';
import { endClient, tryConnect } from './helpers.ts';

const open: MqttClient[] = [];
afterAll(async () => { await Promise.all(open.map(endClient)); });

/** Every form a leaked secret could take in storage. */
function forms(secret: string): { name: string; bytes: Buffer }[] {
  const body = secret.replace(/^fleet_[a-z]{2}_/, '');
  return [
    { name: 'plaintext', bytes: Buffer.from(secret) },
    { name: 'body without prefix', bytes: Buffer.from(body) },
    { name: 'raw random bytes', bytes: Buffer.from(body, 'base64url') },
  ];
}

describe('secrets at rest (allowUnenrolledDevices off)', () => {
  let server: TestServer;
  const secrets: { kind: string; value: string }[] = [];

  beforeAll(async () => {
    server = await startTestServer({ config: { allowUnenrolledDevices: false } });
    // enrollment tokens: used up, partly used, unused, revoked
    const make = async (body: object) => (await server.app.inject({ method: 'POST', url: '/v1/enrollment-tokens', payload: body })).json() as { tokenId: string; token: string };
    const used = await make({ uses: 2 });
    const partly = await make({ uses: 5 });
    const unused = await make({ uses: 1 });
    const revoked = await make({ uses: 1 });
    await server.app.inject({ method: 'POST', url: `/v1/enrollment-tokens/${revoked.tokenId}/revoke` });
    for (const t of [used, partly, unused, revoked]) secrets.push({ kind: 'enrollment token', value: t.token });
    secrets.push({ kind: 'enrollment token', value: server.enrollmentToken }); // the harness's own (many uses, for agents that enroll themselves)
    const enroll = async (token: string, deviceIds: string[]) => {
      const r = await server.anonInject({ method: 'POST', url: '/v1/enroll', payload: { enrollmentToken: token, deviceIds } });
      expect(r.statusCode, r.body).toBe(201);
      for (const d of r.json().devices) secrets.push({ kind: 'device secret', value: d.secret });
    };
    await enroll(used.token, ['hs-1', 'hs-2']);
    await enroll(partly.token, ['hs-3']);
    // admin-issued and rotated credentials (the rotated-away one must not be there either)
    for (const id of ['hs-4', 'hs-4', 'hs-3']) {
      const r = await server.app.inject({ method: 'POST', url: `/v1/devices/${id}/credentials` });
      expect(r.statusCode).toBe(201);
      secrets.push({ kind: 'device secret', value: r.json().secret });
    }
    // the secrets work (so the store really holds what verifies them)
    const ok = await tryConnect(server, { clientId: 'hs-4', username: 'hs-4', password: secrets[secrets.length - 2].value });
    expect(ok.ok).toBe(true);
    if (ok.ok) open.push(ok.client);
  }, 30_000);

  afterAll(async () => { await server?.close(); });

  it('the database file and its WAL hold no secret in any form, only SHA-256 digests', () => {
    server.app.fleet.db.pragma('wal_checkpoint(TRUNCATE)');
    const file = join(server.dir, 'server', 'fleet.db');
    const bytes = Buffer.concat([readFileSync(file), existsSync(`${file}-wal`) ? readFileSync(`${file}-wal`) : Buffer.alloc(0)]);
    expect(secrets).toHaveLength(5 + 3 + 3);
    for (const s of secrets) {
      for (const f of forms(s.value)) expect(bytes.indexOf(f.bytes), `${s.kind} ${f.name}`).toBe(-1);
      expect(bytes.indexOf(Buffer.from(sha256Hex(s.value))), `${s.kind} digest`).toBeGreaterThan(-1);
    }
  });

  it('no row of any table holds a secret; the digests are in their own tables, one row each', () => {
    const db = server.app.fleet.db;
    const tables = (db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all() as { name: string }[]).map((t) => t.name);
    expect(tables).toEqual(expect.arrayContaining(['device_credentials', 'enrollment_tokens', 'api_tokens', 'audit_log']));
    const text = tables.map((t) => JSON.stringify(db.prepare(`SELECT * FROM "${t}"`).all())).join('\n');
    for (const s of secrets) {
      expect(text.includes(s.value), s.kind).toBe(false);
      expect(text.includes(forms(s.value)[1].bytes.toString()), `${s.kind} body`).toBe(false);
    }
    const count = (sql: string, v: string) => (db.prepare(sql).get(sha256Hex(v)) as { n: number }).n;
    for (const s of secrets) {
      const sql = s.kind === 'device secret' ? 'SELECT COUNT(*) AS n FROM device_credentials WHERE secret_sha256 = ?' : 'SELECT COUNT(*) AS n FROM enrollment_tokens WHERE token_sha256 = ?';
      expect(count(sql, s.value), s.kind).toBe(1);
    }
    // 3 enrolled + 3 issued rows (2 of them replaced: revoked, kept for history); 4 enrollment tokens and the harness's
    expect(db.prepare('SELECT COUNT(*) AS n FROM device_credentials').pluck().get()).toBe(6);
    expect(db.prepare('SELECT COUNT(*) AS n FROM device_credentials WHERE revoked_at IS NULL').pluck().get()).toBe(4);
    expect(db.prepare('SELECT COUNT(*) AS n FROM enrollment_tokens').pluck().get()).toBe(5);
  });
});

describe('allowUnenrolledDevices on: an enrolled device must still present its own secret', () => {
  let server: TestServer;
  let secrets: Map<string, string>;
  let bundle: Awaited<ReturnType<typeof pushBundle>>;
  let freeBundle: Awaited<ReturnType<typeof pushBundle>>;
  const get = (sha: string, token?: string) => server.anonInject({ method: 'GET', url: `/v1/artifacts/${sha}`, headers: token ? { authorization: `Bearer ${token}` } : {} });

  beforeAll(async () => {
    server = await startTestServer({ config: { allowUnenrolledDevices: true } });
    secrets = await enrollDevices(server, ['en-1', 'en-2', 'en-3']);
    bundle = await pushBundle(server, 'tiny', tinyClassifier(1));
    freeBundle = await pushBundle(server, 'other', tinyClassifier(2));
    await assign(server, bundle.manifestSha256, ['en-1']);
    await assign(server, freeBundle.manifestSha256, ['free-1']);
  }, 30_000);

  afterAll(async () => { await server?.close(); });

  it.each([
    ['no credentials', {}, 5],
    ['a wrong secret', { username: 'en-1', password: 'fleet_ds_' + 'W'.repeat(43) }, 4],
    ['another enrolled device\'s secret', { username: 'en-1', password: '@en-2' }, 4],
    ['a username that is not its id', { username: 'en-2', password: '@en-1' }, 4],
  ])('MQTT CONNECT as enrolled en-1 with %s: refused with its CONNACK code', async (_n, opts: { username?: string; password?: string }, code) => {
    const password = opts.password?.startsWith('@') ? secrets.get(opts.password.slice(1)) : opts.password;
    const r = await tryConnect(server, { clientId: 'en-1', ...opts, password });
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.code).toBe(code);
  });

  it('with its own secret it connects; a device with no credential on record connects without one (the development switch is on)', async () => {
    const own = await tryConnect(server, { clientId: 'en-1', username: 'en-1', password: secrets.get('en-1') });
    expect(own.ok).toBe(true);
    if (own.ok) open.push(own.client);
    const free = await tryConnect(server, { clientId: 'free-1' });
    expect(free.ok).toBe(true);
    if (free.ok) open.push(free.client);
  });

  it('artifacts assigned only to enrolled devices are not served anonymously or on a wrong secret; the device\'s own secret gets them', async () => {
    const sha = bundle.manifest.artifact.sha256;
    const anon = await get(sha);
    expect(anon.statusCode).toBe(403);
    expect(anon.json().error).toBe('FLEET_ERR_FORBIDDEN');
    expect((await get(sha, 'fleet_ds_' + 'W'.repeat(43))).statusCode).toBe(401);
    expect((await get(sha, secrets.get('en-2'))).statusCode).toBe(403);
    expect((await get(sha, secrets.get('en-1'))).statusCode).toBe(200);
    // an artifact assigned to a device without a credential is served anonymously (what the switch is for)
    expect((await get(freeBundle.manifest.artifact.sha256)).statusCode).toBe(200);
  });

  it('a revoked device does not count as unenrolled: without a credential it is refused, its artifacts stay closed', async () => {
    await assign(server, bundle.manifestSha256, ['en-3']);
    const res = await server.app.inject({ method: 'POST', url: '/v1/devices/en-3/revoke' });
    expect(res.statusCode).toBe(200);
    const r = await tryConnect(server, { clientId: 'en-3' });
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.code).toBe(5);
    expect((await tryConnect(server, { clientId: 'en-3', username: 'en-3', password: secrets.get('en-3') })).ok).toBe(false);
    expect((await get(bundle.manifest.artifact.sha256)).statusCode).toBe(403);
    expect((await get(bundle.manifest.artifact.sha256, secrets.get('en-3'))).statusCode).toBe(401);
  });
});

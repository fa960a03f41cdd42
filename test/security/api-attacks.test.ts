// Admin API attacks: no token, wrong role, revoked or forged tokens, rate limits, oversized and
// malformed bodies, path traversal in ids; every refusal is a clear 4xx with no stack or path, the
// server keeps serving, and every change made through the API is in the append-only audit log.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { sha256Hex } from '../../shared/crypto.ts';
import { pushBundle, startTestServer, type TestServer } from '../helpers/harness.ts';
import { tinyClassifier } from '../helpers/tiny-models.ts';
import { leakProblems, stillServing } from './helpers.ts';

let server: TestServer;
let bundle: Awaited<ReturnType<typeof pushBundle>>;
const tokens: Record<string, string> = {};
const as = (token: string | null, method: 'GET' | 'POST', url: string, payload?: unknown, headers: Record<string, string> = {}) =>
  server.anonInject({ method, url, payload: payload as object, headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...headers } });

async function expectRefused(res: { statusCode: number; body: string; json(): unknown }, status: number, message: RegExp) {
  expect(res.statusCode, res.body).toBe(status);
  const body = res.json() as { error: string; message: string };
  expect(body.error).toMatch(/^FLEET_ERR_|^FST_/);
  expect(body.message).toMatch(message);
  expect(leakProblems(res.body, [server.dir])).toEqual([]);
  expect(await stillServing(server)).toBe(true);
}

beforeAll(async () => {
  server = await startTestServer({ config: { allowUnenrolledDevices: false, maxBodyBytes: 64 * 1024 } });
  for (const role of ['viewer', 'operator', 'admin'] as const) {
    const r = await server.app.inject({ method: 'POST', url: '/v1/tokens', payload: { name: `${role}-1`, role } });
    expect(r.statusCode, r.body).toBe(201);
    tokens[role] = r.json().token;
  }
  bundle = await pushBundle(server, 'tiny', tinyClassifier(1));
}, 30_000);

afterAll(async () => {
  await server?.close();
});

const ROUTES: [string, 'GET' | 'POST', string, unknown?][] = [
  ['list devices', 'GET', '/v1/devices'],
  ['list bundles', 'GET', '/v1/bundles'],
  ['keys', 'GET', '/v1/keys'],
  ['upload', 'POST', '/v1/uploads'],
  ['assign', 'POST', '/v1/assignments', { manifestSha256: 'a'.repeat(64), deviceIds: ['d1'] }],
  ['campaign', 'POST', '/v1/campaigns', {}],
  ['rotate keys', 'POST', '/v1/keys/rotate'],
  ['make a token', 'POST', '/v1/tokens', { name: 'x', role: 'admin' }],
  ['revoke a device', 'POST', '/v1/devices/d1/revoke'],
  ['audit log', 'GET', '/v1/audit'],
];

describe('who may call what', () => {
  it.each(ROUTES)('no token: %s -> 401 with WWW-Authenticate', async (_n, method, url, payload) => {
    const res = await as(null, method, url, payload);
    await expectRefused(res, 401, /needs a token/);
    expect(res.headers['www-authenticate']).toMatch(/^Bearer/);
  });

  it.each([
    ['an unknown token', 'Bearer fleet_at_' + 'A'.repeat(43)],
    ['a token of the wrong kind', 'Bearer fleet_et_' + 'A'.repeat(43)],
    ['not Bearer', 'Basic YWRtaW46YWRtaW4='],
    ['an empty bearer', 'Bearer '],
    ['a token with spaces', 'Bearer a b c'],
  ])('%s -> 401', async (_n, authorization) => {
    const res = await server.anonInject({ method: 'GET', url: '/v1/devices', headers: { authorization } });
    await expectRefused(res, 401, /token|authorization/);
  });

  it('viewer reads, but may not push, assign, run campaigns, or touch keys, tokens, devices, audit', async () => {
    expect((await as(tokens.viewer, 'GET', '/v1/devices')).statusCode).toBe(200);
    expect((await as(tokens.viewer, 'GET', `/v1/bundles/${bundle.manifestSha256}`)).statusCode).toBe(200);
    for (const [name, method, url, payload] of ROUTES.filter((r) => r[1] === 'POST' || r[2] === '/v1/audit')) {
      const res = await as(tokens.viewer, method, url, payload);
      expect(res.statusCode, `${name}: ${res.body}`).toBe(403);
      expect(res.json().message).toMatch(/needs the (operator|admin) role; token viewer-1 has viewer/);
    }
  });

  it('operator pushes and assigns, but may not touch keys, tokens, device credentials or the audit log', async () => {
    const a = await as(tokens.operator, 'POST', '/v1/assignments', { manifestSha256: bundle.manifestSha256, deviceIds: ['d1'] });
    expect(a.statusCode, a.body).toBe(202);
    for (const [name, method, url, payload] of ROUTES.filter((r) => /keys\/rotate|tokens|revoke|audit/.test(r[2]))) {
      const res = await as(tokens.operator, method, url, payload);
      expect(res.statusCode, `${name}: ${res.body}`).toBe(403);
      expect(res.json().message).toMatch(/needs the admin role/);
    }
  });

  it('admin makes and revokes tokens; a revoked token is refused on its next request', async () => {
    const made = await as(tokens.admin, 'POST', '/v1/tokens', { name: 'short-lived', role: 'operator' });
    expect(made.statusCode).toBe(201);
    const { token, tokenId } = made.json();
    expect((await as(token, 'GET', '/v1/devices')).statusCode).toBe(200);
    expect((await as(tokens.admin, 'POST', `/v1/tokens/${tokenId}/revoke`)).statusCode).toBe(200);
    await expectRefused(await as(token, 'GET', '/v1/devices'), 401, /not valid/);
    const list = (await as(tokens.admin, 'GET', '/v1/tokens')).json().tokens as { tokenId: string; revokedAt: string | null }[];
    expect(list.find((t) => t.tokenId === tokenId)?.revokedAt).toBeTruthy();
    expect(JSON.stringify(list)).not.toMatch(/fleet_at_|sha256/);
  });

  it('tokens and device secrets are stored hashed: no plaintext in the database file', async () => {
    server.app.fleet.db.pragma('wal_checkpoint(TRUNCATE)');
    const file = readFileSync(join(server.dir, 'server', 'fleet.db')).toString('latin1');
    for (const t of [...Object.values(tokens), server.adminToken]) {
      expect(file.includes(t)).toBe(false);
      expect(file.includes(sha256Hex(t))).toBe(true);
    }
  });
});

describe('limits', () => {
  it('a JSON body over maxBodyBytes -> 413, the server keeps serving', async () => {
    const big = { manifestSha256: bundle.manifestSha256, deviceIds: Array.from({ length: 8000 }, (_, i) => `device-${i}-${'x'.repeat(10)}`) };
    await expectRefused(await as(tokens.operator, 'POST', '/v1/assignments', big), 413, /too large/i);
  });

  it('malformed bodies -> 400 naming the problem', async () => {
    await expectRefused(await server.anonInject({ method: 'POST', url: '/v1/tokens', headers: { authorization: `Bearer ${tokens.admin}`, 'content-type': 'application/json' }, payload: '{"name": ' }), 400, /json/i);
    await expectRefused(await as(tokens.admin, 'POST', '/v1/tokens', { name: 'x', role: 'root' }), 400, /role/);
    await expectRefused(await as(tokens.admin, 'POST', '/v1/tokens', { name: '../etc', role: 'viewer' }), 400, /name/);
    await expectRefused(await as(tokens.admin, 'POST', '/v1/enrollment-tokens', { uses: -1 }), 400, /uses/);
    await expectRefused(await as(null, 'POST', '/v1/enroll', { enrollmentToken: 'x', deviceIds: ['../../etc'] }), 400, /deviceIds/);
  });

  it('an encoded ".." segment is normalised away before routing: 404, no route', async () => {
    await expectRefused(await as(tokens.admin, 'POST', '/v1/devices/%2E%2E/revoke'), 404, /no route/);
  });

  it.each(['..%2F..%2Fetc%2Fpasswd', 'a%2Fb', '%00', '.hidden', 'x'.repeat(90)])('path traversal in ids (%s) -> 400 naming the parameter', async (id) => {
    await expectRefused(await as(tokens.admin, 'POST', `/v1/devices/${id}/revoke`), 400, /deviceId/);
    await expectRefused(await as(tokens.admin, 'POST', `/v1/tokens/${id}/revoke`), 400, /tokenId/);
    await expectRefused(await as(tokens.admin, 'GET', `/v1/artifacts/${id}`), 400, /sha256/);
  });

  it('rate limit per token -> 429 with Retry-After; another token is not affected', async () => {
    const limited = await startTestServer({ config: { apiRateLimit: { perSecond: 1, burst: 5 }, authFailureRateLimit: { perSecond: 1, burst: 3 } } });
    try {
      const codes: number[] = [];
      for (let i = 0; i < 8; i++) codes.push((await limited.app.inject({ method: 'GET', url: '/v1/devices' })).statusCode);
      expect(codes.slice(0, 4)).toEqual([200, 200, 200, 200]); // the fifth went on making the viewer token below
      const last = await limited.app.inject({ method: 'GET', url: '/v1/devices' });
      expect(last.statusCode).toBe(429);
      expect(last.headers['retry-after']).toBeDefined();
      expect(last.json().error).toBe('FLEET_ERR_RATE_LIMITED');
      // failed authentications from one address are limited too (token guessing)
      const bad: number[] = [];
      for (let i = 0; i < 6; i++) bad.push((await limited.anonInject({ method: 'GET', url: '/v1/devices', headers: { authorization: `Bearer fleet_at_${'g'.repeat(42)}${i}` } })).statusCode);
      expect(bad).toContain(429);
      expect((await limited.anonInject({ method: 'GET', url: '/healthz' })).statusCode).toBe(200);
    } finally {
      await limited.close();
    }
  });
});

describe('audit log', () => {
  it('records every change made through the API with who, what, when and from where', async () => {
    await as(tokens.operator, 'POST', '/v1/assignments', { manifestSha256: bundle.manifestSha256, deviceIds: ['d2'] });
    const et = await as(tokens.admin, 'POST', '/v1/enrollment-tokens', { uses: 1 });
    await as(null, 'POST', '/v1/enroll', { enrollmentToken: et.json().token, deviceIds: ['d9'] });
    await as(tokens.admin, 'POST', '/v1/devices/d9/revoke');
    await as(tokens.admin, 'POST', '/v1/keys/rotate');
    const res = await as(tokens.admin, 'GET', '/v1/audit?limit=1000');
    expect(res.statusCode).toBe(200);
    const entries = res.json().entries as { ts: string; actor: string; action: string; target: string; source: string }[];
    const actions = new Set(entries.map((e) => e.action));
    for (const a of ['tokens.bootstrap', 'tokens.create', 'tokens.revoke', 'uploads.create', 'bundles.create', 'assignments.create',
      'enrollment.token_create', 'devices.enroll', 'devices.revoke', 'keys.rotate']) expect(actions, a).toContain(a);
    const assignment = entries.find((e) => e.action === 'assignments.create' && e.actor === 'operator-1');
    expect(assignment).toMatchObject({ target: bundle.manifestSha256, source: '127.0.0.1' });
    expect(Date.parse(assignment!.ts)).toBeGreaterThan(Date.now() - 60_000);
    expect(entries.find((e) => e.action === 'keys.rotate')?.actor).toBe('admin-1');
    // refused requests change nothing and are not logged as changes
    expect(entries.filter((e) => e.actor === 'viewer-1')).toEqual([]);
    // filters
    const keysOnly = (await as(tokens.admin, 'GET', '/v1/audit?action=keys.')).json().entries as { action: string }[];
    expect(keysOnly.length).toBeGreaterThan(0);
    expect(keysOnly.every((e) => e.action.startsWith('keys.'))).toBe(true);
    await expectRefused(await as(tokens.admin, 'GET', '/v1/audit?limit=abc'), 400, /limit/);
  });

  it('is append-only: the store refuses UPDATE and DELETE', () => {
    const db = server.app.fleet.db;
    expect(() => db.prepare('DELETE FROM audit_log').run()).toThrow(/append-only/);
    expect(() => db.prepare("UPDATE audit_log SET actor = 'someone-else'").run()).toThrow(/append-only/);
  });
});

// A seeded fuzz run: 8,000 random and mutated admin-API requests (every route, every role, bad ids,
// bad bodies, bad content types) and 4,000 random and mutated MQTT payloads from an enrolled device.
// Zero 5xx answers, zero crashes, the device stays connected, the store stays intact. Deterministic:
// FUZZ_SEED replays a run.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MqttClient } from 'mqtt';
import { topics } from '../../shared/topics.ts';
import { enrollDevices, pushBundle, startTestServer, type TestServer } from '../helpers/harness.ts';
import { tinyClassifier } from '../helpers/tiny-models.ts';
import { connectDevice, endClient, leakProblems, prng, publishAsync, stillServing, waitFor } from './helpers.ts';

const SEED = Number(process.env.FUZZ_SEED ?? 20240607);
const HTTP_REQUESTS = 8000;
const MQTT_PAYLOADS = 4000;
const unlimited = { perSecond: 1e9, burst: 1e9 };

let server: TestServer;
let device: MqttClient;
let bundle: Awaited<ReturnType<typeof pushBundle>>;
let model: Uint8Array;
const tokens: Record<string, string> = {};
let deviceSecret = '';

beforeAll(async () => {
  server = await startTestServer({ config: { allowUnenrolledDevices: false, apiRateLimit: unlimited, authFailureRateLimit: unlimited, mqttRateLimit: unlimited, maxBodyBytes: 256 * 1024 } });
  for (const role of ['viewer', 'operator'] as const) tokens[role] = (await server.app.inject({ method: 'POST', url: '/v1/tokens', payload: { name: `fuzz-${role}`, role } })).json().token;
  tokens.admin = server.adminToken;
  model = tinyClassifier(1);
  bundle = await pushBundle(server, 'tiny', model);
  deviceSecret = (await enrollDevices(server, ['fuzz-dev'])).get('fuzz-dev')!;
  device = await connectDevice(server, 'fuzz-dev', deviceSecret);
}, 30_000);

afterAll(async () => {
  await endClient(device);
  await server?.close();
});

function mutator(rand: () => number) {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)];
  const int = (n: number) => Math.floor(rand() * n);
  const chars = 'abcXYZ019._-/%+#?&=:;@!$*()[]{}<>"\'\\ \u0000\u00e9\u2603';
  const str = (max: number) => Array.from({ length: int(max) }, () => chars[int(chars.length)]).join('');
  const weird = (): unknown => pick<unknown>([
    null, true, false, 0, -1, 1e308, -1e308, 2 ** 53 + 1, 0.5, '', 'x'.repeat(int(5000)), str(40), '../../etc/passwd', '__proto__', 'constructor',
    [], {}, [[[[[[[[]]]]]]]], JSON.parse('{"__proto__":{"polluted":true}}'), { constructor: { prototype: { polluted: true } } }, '1970-01-01T00:00:00Z', 'a'.repeat(64),
  ]);
  const randomJson = (depth = 0): unknown => {
    const r = rand();
    if (depth > 4 || r < 0.4) return weird();
    if (r < 0.7) return Array.from({ length: int(5) }, () => randomJson(depth + 1));
    return Object.fromEntries(Array.from({ length: int(5) }, () => [pick(['name', 'role', 'deviceIds', 'manifestSha256', 'uploadSha256', 'quantize', 'all', 'uses', str(8)]), randomJson(depth + 1)]));
  };
  /** change one thing in a valid value: drop, retype, or replace a field, recursively */
  const mutate = (v: unknown, depth = 0): unknown => {
    if (v === null || typeof v !== 'object' || depth > 5) return rand() < 0.5 ? weird() : v;
    const copy: Record<string, unknown> = Array.isArray(v) ? [...v] as unknown as Record<string, unknown> : { ...(v as Record<string, unknown>) };
    const keys = Object.keys(copy);
    const r = rand();
    if (keys.length === 0 || r < 0.15) copy[str(6) || 'extra'] = weird();
    else {
      const k = pick(keys);
      if (r < 0.35) delete copy[k];
      else if (r < 0.7) copy[k] = mutate(copy[k], depth + 1);
      else copy[k] = weird();
    }
    return copy;
  };
  return { pick, int, str, weird, randomJson, mutate };
}

describe('fuzz', () => {
  it(`${HTTP_REQUESTS} random and mutated API requests: no 5xx, no leaks, the server keeps serving`, async () => {
    const rand = prng(SEED);
    const { pick, int, str, randomJson, mutate } = mutator(rand);
    const sha = bundle.manifestSha256;
    const ids = () => pick(['dev-1', 'fuzz-x', str(20), encodeURIComponent(str(10)), '..%2F..%2Fetc', 'a'.repeat(64), '%00', 'x%2Fy', sha]);
    const shas = () => pick([sha, bundle.manifest.artifact.sha256, 'f'.repeat(64), 'F'.repeat(64), str(64), encodeURIComponent(str(30))]);
    const valid: Record<string, () => unknown> = {
      assign: () => ({ manifestSha256: sha, deviceIds: [pick(['fz-1', 'fz-2', 'fz-3'])] }),
      bundle: () => ({ uploadSha256: bundle.manifest.artifact.sha256, quantize: 'none' }),
      campaign: () => ({ manifestSha256: sha, target: { deviceIds: ['fz-1'] } }),
      token: () => ({ name: 'fz', role: pick(['viewer', 'operator', 'admin']) }),
      enrollToken: () => ({ uses: 1 + int(3), ttlSeconds: 600 }),
      enroll: () => ({ enrollmentToken: 'fleet_et_' + str(43), deviceIds: ['fz-e'] }),
    };
    const routes: [string, () => string, string?][] = [
      ['GET', () => '/healthz'], ['GET', () => '/v1/devices'], ['GET', () => `/v1/devices?limit=${pick(['1', '-1', 'abc', '1e9', str(5)])}&hardware=${encodeURIComponent(str(8))}`],
      ['GET', () => `/v1/devices/${ids()}`], ['GET', () => '/v1/models'], ['GET', () => `/v1/models/${ids()}/bundles`], ['GET', () => '/v1/bundles'],
      ['GET', () => `/v1/bundles/${shas()}`], ['GET', () => `/v1/uploads/${shas()}`], ['GET', () => `/v1/artifacts/${shas()}`], ['HEAD', () => `/v1/artifacts/${shas()}`],
      ['GET', () => '/v1/keys'], ['GET', () => '/v1/campaigns'], ['GET', () => `/v1/campaigns/${pick([str(36), '00000000-0000-4000-8000-000000000000'])}`],
      ['GET', () => `/v1/audit?limit=${pick(['5', '0', '-3', str(4)])}&action=${encodeURIComponent(str(6))}&after=${pick(['1', 'x', ''])}`],
      ['GET', () => '/v1/tokens'], ['GET', () => '/v1/whoami'], ['GET', () => `/v1/${str(30)}`],
      ['POST', () => '/v1/assignments', 'assign'], ['POST', () => `/v1/models/${pick(['tiny', 'fz', ids()])}/bundles`, 'bundle'], ['POST', () => '/v1/campaigns', 'campaign'],
      ['POST', () => `/v1/campaigns/${pick([str(36), '00000000-0000-4000-8000-000000000000'])}/${pick(['pause', 'abort', 'revert', str(5)])}`],
      ['POST', () => '/v1/tokens', 'token'], ['POST', () => `/v1/tokens/${pick(['0123456789abcdef', str(16)])}/revoke`],
      ['POST', () => '/v1/enrollment-tokens', 'enrollToken'], ['POST', () => '/v1/enroll', 'enroll'],
      ['POST', () => `/v1/devices/${pick(['fz-1', ids()])}/revoke`], ['POST', () => `/v1/devices/${pick(['fz-2', ids()])}/credentials`],
      ['POST', () => `/v1/keys/${pick(['ab'.repeat(16), str(32)])}/revoke`], ['POST', () => '/v1/keys/keyset'],
      ['POST', () => '/v1/uploads'], ['PUT', () => '/v1/devices'], ['DELETE', () => `/v1/tokens/${str(16)}`], ['PATCH', () => '/v1/assignments'],
    ];
    const failures: string[] = [];
    const statuses: Record<number, number> = {};
    const t0 = Date.now();
    for (let n = 0; n < HTTP_REQUESTS; n++) {
      const [method, path, kind] = pick(routes);
      const url = path();
      const who = rand();
      const authorization = who < 0.55 ? `Bearer ${tokens.admin}` : who < 0.7 ? `Bearer ${tokens.operator}` : who < 0.8 ? `Bearer ${tokens.viewer}`
        : who < 0.85 ? `Bearer ${deviceSecret}` : who < 0.92 ? undefined : pick([`Bearer ${str(40)}`, str(20), 'Bearer', `Bearer fleet_at_${str(43)}`]);
      const headers: Record<string, string> = {};
      if (authorization !== undefined) headers.authorization = authorization.replace(/[\u0000-\u001f\u007f-\uffff]/g, '?');
      let payload: string | Buffer | undefined;
      const b = rand();
      if (method !== 'GET' && method !== 'HEAD') {
        if (b < 0.45 && kind) payload = JSON.stringify(mutate(valid[kind]()));
        else if (b < 0.55 && kind) payload = JSON.stringify(valid[kind]());
        else if (b < 0.7) payload = JSON.stringify(randomJson());
        else if (b < 0.8) payload = pick(['{', '{"a":', '[1,2', 'null', '"str"', '{"__proto__":{"x":1}}', str(100)]);
        else if (b < 0.9) {
          const bytes = Buffer.from(model);
          for (let i = 0; i < 1 + int(8); i++) bytes[int(bytes.length)] = int(256);
          payload = rand() < 0.5 ? bytes : bytes.subarray(0, int(bytes.length));
        }
        headers['content-type'] = b >= 0.8 && b < 0.9 ? 'application/octet-stream' : pick(['application/json', 'application/json', 'application/json', 'text/plain', 'application/octet-stream', str(10).replace(/[^\x21-\x7e]/g, 'x') || 'x/y', 'application/json; charset=utf-16']);
      }
      let res;
      try {
        res = await server.anonInject({ method: method as 'GET', url, headers, payload });
      } catch (err) {
        failures.push(`#${n} ${method} ${url}: inject threw ${(err as Error).message}`);
        continue;
      }
      statuses[res.statusCode] = (statuses[res.statusCode] ?? 0) + 1;
      if (res.statusCode >= 500) failures.push(`#${n} ${method} ${url} -> ${res.statusCode} ${res.body.slice(0, 200)}`);
      else if (res.statusCode >= 400 && leakProblems(res.body, [server.dir]).length) failures.push(`#${n} ${method} ${url} leaks: ${res.body.slice(0, 200)}`);
    }
    const ms = Date.now() - t0;
    expect(failures.slice(0, 10), `seed ${SEED}, statuses ${JSON.stringify(statuses)}`).toEqual([]);
    // the run reached the handlers, not only the auth hook
    expect(Object.keys(statuses).map(Number).filter((s) => s < 300).length).toBeGreaterThan(0);
    expect((statuses[400] ?? 0) + (statuses[404] ?? 0)).toBeGreaterThan(HTTP_REQUESTS / 10);
    // every request was answered (none hung, none threw); how long the run took is the host's business, not
    // a property of the server (it was once asserted under 45 s and failed on a loaded machine), so the
    // bound is the test timeout only
    expect(Object.values(statuses).reduce((a, b) => a + b, 0), `answers in ${ms} ms`).toBe(HTTP_REQUESTS);
    expect(await stillServing(server)).toBe(true);
    expect(server.app.fleet.db.pragma('integrity_check', { simple: true })).toBe('ok');
  }, 180_000);

  it(`${MQTT_PAYLOADS} random and mutated MQTT payloads on the device's own topics: dropped or stored, nothing crashes`, async () => {
    const rand = prng(SEED + 1);
    const { pick, mutate, randomJson, str } = mutator(rand);
    const now = new Date().toISOString();
    const valid = {
      status: () => ({ deviceId: 'fuzz-dev', ts: now, state: 'idle', active: null, agentVersion: '1.0.0' }),
      telemetry: () => ({ deviceId: 'fuzz-dev', seq: Math.floor(rand() * 1e6), windowStart: now, windowEnd: now, active: null, count: 1, errors: 0, latencyMs: { p50: 1, p95: 2, p99: 3, max: 4 }, rssBytes: 1000 }),
      presence: () => ({ deviceId: 'fuzz-dev', online: true, ts: now, hardware: 'cam', tags: ['a'] }),
    };
    const ingest = server.app.fleet.ingest;
    const total = () => [...Object.values(ingest.counters.accepted), ...Object.values(ingest.counters.dropped), ...Object.values(ingest.counters.duplicates)].reduce((a, b) => a + b, 0);
    const before = total();
    for (let n = 0; n < MQTT_PAYLOADS; n++) {
      const kind = pick(['status', 'telemetry', 'presence'] as const);
      const r = rand();
      const payload = r < 0.6 ? JSON.stringify(mutate(valid[kind]())) : r < 0.7 ? JSON.stringify(valid[kind]())
        : r < 0.85 ? JSON.stringify(randomJson()) : r < 0.95 ? str(200) : Buffer.from(Array.from({ length: Math.floor(rand() * 2000) }, () => Math.floor(rand() * 256)));
      const body = typeof payload === 'string' && payload.length > 8000 ? payload.slice(0, 8000) : payload;
      if (n % 500 === 499) await publishAsync(device, topics[kind]('fuzz-dev'), body, 1);
      else device.publish(topics[kind]('fuzz-dev'), body, { qos: 0 });
    }
    await waitFor(() => total() - before >= MQTT_PAYLOADS, 60_000, `all ${MQTT_PAYLOADS} payloads handled`);
    expect(device.connected).toBe(true);
    expect(await stillServing(server)).toBe(true);
    await server.app.fleet.ingest.telemetry.flush();
    expect(server.app.fleet.db.pragma('integrity_check', { simple: true })).toBe('ok');
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  }, 120_000);
});

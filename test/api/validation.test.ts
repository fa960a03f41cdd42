// Every malformed admin-API request gets a 4xx with {error, message} naming the problem, never a stack
// trace or a server path, and the server keeps serving. Plus artifact downloads with HTTP Range.
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { b64, sha256Hex } from '../../shared/crypto.ts';
import { pushBundle, startTestServer, uploadModel, type TestServer } from '../helpers/harness.ts';
import { tinyClassifier } from '../helpers/tiny-models.ts';
import { startInjectServer, type InjectServer } from './small-server.ts';

let server: TestServer;
let model: Uint8Array;
let bundle: Awaited<ReturnType<typeof pushBundle>>;
/** every response body seen, checked at the end for leaks */
const bodies: { what: string; body: string }[] = [];

beforeAll(async () => {
  server = await startTestServer();
  model = tinyClassifier(3);
  bundle = await pushBundle(server, 'tiny', model, { quantize: 'none' });
});

afterAll(async () => {
  await server?.close();
});

function leakProblems(body: string, dirs: string[]): string[] {
  const problems: string[] = [];
  if (/\n\s+at\s/.test(body) || /\bat [\w.<>]+ \(/.test(body)) problems.push('stack trace');
  if (/"stack"\s*:/.test(body)) problems.push('stack field');
  for (const d of dirs) if (d && body.includes(d)) problems.push(`path ${d}`);
  if (body.includes(process.cwd())) problems.push('repo path');
  if (/node_modules|\/tmp\/|\\\\Temp\\\\|fleet\.db|blobs\//.test(body)) problems.push('file system path');
  return problems;
}

/** Assert a 4xx with {error, message}, message matching `names`, then that the server still serves. */
async function expectRefused(app: FastifyInstance, what: string, res: LightMyRequestResponse, status: number, names: RegExp, dirs: string[] = [server.dir]) {
  bodies.push({ what, body: res.body });
  expect(res.statusCode, `${what}: ${res.body}`).toBe(status);
  expect(res.headers['content-type'], what).toMatch(/application\/json/);
  const body = res.json() as { error?: unknown; message?: unknown };
  expect(typeof body.error, what).toBe('string');
  expect(typeof body.message, what).toBe('string');
  expect((body.error as string).length).toBeGreaterThan(0);
  expect(body.message as string, what).toMatch(names);
  expect(leakProblems(res.body, dirs), what).toEqual([]);
  const health = await app.inject({ method: 'GET', url: '/healthz' });
  expect(health.statusCode, `healthz after ${what}`).toBe(200);
  expect(health.json()).toMatchObject({ ok: true });
}

describe('uploads', () => {
  it('no body at all -> 415 naming the expected content type', async () => {
    const res = await server.app.inject({ method: 'POST', url: '/v1/uploads' });
    await expectRefused(server.app, 'upload without body', res, 415, /application\/octet-stream/);
  });

  it('empty octet-stream body -> 4xx naming the problem', async () => {
    const res = await server.app.inject({ method: 'POST', url: '/v1/uploads', headers: { 'content-type': 'application/octet-stream' }, payload: Buffer.alloc(0) });
    bodies.push({ what: 'empty upload', body: res.body });
    expect(res.statusCode).toBeGreaterThanOrEqual(400);
    expect(res.statusCode).toBeLessThan(500);
    expect(res.json().message).toMatch(/empty|0 bytes|octet-stream|body/i);
    expect((await server.app.inject({ method: 'GET', url: '/healthz' })).statusCode).toBe(200);
  });

  it('JSON content type -> 415 naming the expected content type', async () => {
    const res = await server.app.inject({ method: 'POST', url: '/v1/uploads', payload: { model: 'x' } });
    await expectRefused(server.app, 'upload as JSON', res, 415, /application\/octet-stream/);
  });

  it('an unsupported content type -> 415', async () => {
    const res = await server.app.inject({ method: 'POST', url: '/v1/uploads', headers: { 'content-type': 'image/png' }, payload: Buffer.from(model) });
    await expectRefused(server.app, 'upload as image/png', res, 415, /content[- ]type|image\/png|media type/i);
  });

  it('random bytes (not ONNX) -> 422 saying it is not an ONNX model', async () => {
    const res = await server.app.inject({ method: 'POST', url: '/v1/uploads', headers: { 'content-type': 'application/octet-stream' }, payload: randomBytes(4096) });
    await expectRefused(server.app, 'random bytes', res, 422, /onnx|truncated|graph|opset|model/i);
    expect(res.json().error).toMatch(/^FLEET_ERR_MODEL_/);
  });

  it('a truncated real model -> 422, and nothing is stored under its hash', async () => {
    for (const cut of [Math.floor(model.length / 2), model.length - 7, 40]) {
      const truncated = model.subarray(0, cut);
      const res = await server.app.inject({ method: 'POST', url: '/v1/uploads', headers: { 'content-type': 'application/octet-stream' }, payload: Buffer.from(truncated) });
      await expectRefused(server.app, `model truncated to ${cut} bytes`, res, 422, /truncat|onnx|graph|opset|invalid|model/i);
      expect(res.json().error).toMatch(/^FLEET_ERR_MODEL_/);
      const get = await server.app.inject({ method: 'GET', url: `/v1/uploads/${sha256Hex(truncated)}` });
      await expectRefused(server.app, 'GET truncated upload', get, 404, new RegExp(sha256Hex(truncated)));
    }
  });

  it('the whole model is accepted (control)', async () => {
    const { sha256 } = await uploadModel(server, model);
    expect(sha256).toBe(sha256Hex(model));
  });

  it('GET /v1/uploads with a bad hash -> 400 naming the parameter', async () => {
    const res = await server.app.inject({ method: 'GET', url: '/v1/uploads/nothex' });
    await expectRefused(server.app, 'bad upload hash', res, 400, /sha256/);
  });
});

describe('uploads over the size limit', () => {
  let small: InjectServer;
  const LIMIT = 200;

  beforeAll(async () => {
    small = await startInjectServer({ maxModelBytes: LIMIT });
  });
  afterAll(async () => {
    await small?.close();
  });

  it('a real model over maxModelBytes -> 413 naming the size, and the server keeps serving', async () => {
    expect(model.length).toBeGreaterThan(LIMIT);
    const res = await small.app.inject({ method: 'POST', url: '/v1/uploads', headers: { 'content-type': 'application/octet-stream' }, payload: Buffer.from(model) });
    await expectRefused(small.app, 'upload over limit', res, 413, /too large|limit|bytes/i, [small.dir, small.dataDir]);
    const big = await small.app.inject({ method: 'POST', url: '/v1/uploads', headers: { 'content-type': 'application/octet-stream' }, payload: randomBytes(64 * 1024) });
    await expectRefused(small.app, 'upload far over limit', big, 413, /too large|limit|bytes/i, [small.dir, small.dataDir]);
  });
});

describe('bundle requests', () => {
  const url = '/v1/models/tiny/bundles';
  const post = (payload: string | object, headers: Record<string, string> = {}, u = url) =>
    server.app.inject({ method: 'POST', url: u, headers: { 'content-type': 'application/json', ...headers }, payload: typeof payload === 'string' ? payload : JSON.stringify(payload) });

  it('bad JSON -> 400 saying the body is not JSON', async () => {
    await expectRefused(server.app, 'bad JSON', await post('{"uploadSha256": '), 400, /json/i);
  });

  it('no body -> 400', async () => {
    const res = await server.app.inject({ method: 'POST', url });
    await expectRefused(server.app, 'bundle without body', res, 400, /body/i);
  });

  it('unknown fields -> 400 naming the field', async () => {
    await expectRefused(server.app, 'unknown field', await post({ uploadSha256: sha256Hex(model), quantize: 'none', bogusField: 1 }), 400, /bogusField/);
  });

  it('bad sha256 -> 400 naming uploadSha256', async () => {
    await expectRefused(server.app, 'bad sha', await post({ uploadSha256: 'XYZ', quantize: 'none' }), 400, /uploadSha256/);
    await expectRefused(server.app, 'uppercase sha', await post({ uploadSha256: sha256Hex(model).toUpperCase(), quantize: 'none' }), 400, /uploadSha256/);
  });

  it('wrong types -> 400 naming the field', async () => {
    await expectRefused(server.app, 'quantize enum', await post({ uploadSha256: sha256Hex(model), quantize: 'int4' }), 400, /quantize/);
    await expectRefused(server.app, 'healthCheck vectors', await post({ uploadSha256: sha256Hex(model), quantize: 'none', healthCheck: { vectors: 0 } }), 400, /healthCheck\.vectors/);
  });

  it('unknown upload -> 404 naming the hash', async () => {
    const sha = sha256Hex('never uploaded');
    await expectRefused(server.app, 'unknown upload', await post({ uploadSha256: sha, quantize: 'none' }), 404, new RegExp(sha));
  });

  it.each([
    ['..%2F..%2Fetc'],
    ['..%2F..%2Fetc%2Fpasswd'],
    ['..%2F'],
    ['.hidden'],
    ['%2E%2E%2Fx'],
    ['a%20b'],
    ['-leading-dash'],
    [`${'m'.repeat(65)}`],
  ])('bad modelId %s -> 400 naming the parameter', async (modelId) => {
    // (a bare `..` segment is resolved by URL normalisation before routing, so it never reaches params)
    const res = await post({ uploadSha256: sha256Hex(model), quantize: 'none' }, {}, `/v1/models/${modelId}/bundles`);
    await expectRefused(server.app, `modelId ${modelId}`, res, 400, /modelId/);
    const list = await server.app.inject({ method: 'GET', url: `/v1/models/${modelId}/bundles` });
    await expectRefused(server.app, `list modelId ${modelId}`, list, 400, /modelId/);
  });

  it('reference set whose input name is wrong -> 400 naming the input', async () => {
    const data = b64.encode(new Uint8Array(new Float32Array(2 * 8).buffer));
    const res = await post({ uploadSha256: sha256Hex(model), quantize: 'none', reference: { inputs: { wrongName: { dtype: 'float32', dims: [2, 8], data } } } });
    await expectRefused(server.app, 'reference wrong input', res, 400, /wrongName/);
  });

  it('reference set missing the model input -> 400 naming it', async () => {
    const res = await post({ uploadSha256: sha256Hex(model), quantize: 'none', reference: { inputs: {} } });
    await expectRefused(server.app, 'reference empty', res, 400, /\bx\b/);
  });

  it('no bundle was created by any of the refused requests', async () => {
    const res = await server.app.inject({ method: 'GET', url: '/v1/models/tiny/bundles' });
    expect(res.statusCode).toBe(200);
    expect(res.json().bundles.map((b: { version: number }) => b.version)).toEqual([bundle.version]);
  });
});

describe('assignments', () => {
  const post = (payload: object) => server.app.inject({ method: 'POST', url: '/v1/assignments', payload });

  it('unknown bundle -> 404 naming the manifest', async () => {
    const sha = sha256Hex('no such manifest');
    await expectRefused(server.app, 'unknown bundle', await post({ manifestSha256: sha, deviceIds: ['dev-1'] }), 404, new RegExp(sha));
  });

  it.each([
    ['path traversal', '../etc'],
    ['slash', 'a/b'],
    ['MQTT wildcard +', '+'],
    ['MQTT wildcard #', 'dev#1'],
    ['empty', ''],
    ['too long', 'd'.repeat(65)],
  ])('bad device id (%s) -> 400 naming deviceIds', async (_name, id) => {
    await expectRefused(server.app, `device id ${id}`, await post({ manifestSha256: bundle.manifestSha256, deviceIds: ['ok-1', id] }), 400, /deviceIds/);
  });

  it('an empty deviceIds list -> 400', async () => {
    await expectRefused(server.app, 'empty deviceIds', await post({ manifestSha256: bundle.manifestSha256, deviceIds: [] }), 400, /deviceIds/);
  });

  it('both deviceIds and all -> 400 saying to give one of them', async () => {
    await expectRefused(server.app, 'both', await post({ manifestSha256: bundle.manifestSha256, deviceIds: ['dev-1'], all: true }), 400, /deviceIds.*all|all.*deviceIds/);
  });

  it('neither deviceIds nor all -> 400', async () => {
    await expectRefused(server.app, 'neither', await post({ manifestSha256: bundle.manifestSha256 }), 400, /deviceIds.*all|all.*deviceIds/);
  });

  it('a bad manifest hash -> 400 naming it', async () => {
    await expectRefused(server.app, 'bad manifest hash', await post({ manifestSha256: 'zz', deviceIds: ['dev-1'] }), 400, /manifestSha256/);
  });

  it('no device was created by the refused requests', async () => {
    const res = await server.app.inject({ method: 'GET', url: '/v1/devices' });
    expect(res.statusCode).toBe(200);
    expect(res.json().devices).toEqual([]);
  });
});

describe('artifacts and Range', () => {
  const get = (sha: string, range?: string) =>
    server.app.inject({ method: 'GET', url: `/v1/artifacts/${sha}`, headers: range ? { range } : {} });

  it('unknown sha -> 404, bad sha -> 400', async () => {
    const sha = sha256Hex('no such artifact');
    await expectRefused(server.app, 'unknown artifact', await get(sha), 404, new RegExp(sha));
    await expectRefused(server.app, 'bad artifact sha', await get('..%2F..%2Ffleet.db'), 400, /sha256/);
  });

  it('the full download is the artifact the manifest names', async () => {
    const res = await get(bundle.manifest.artifact.sha256);
    expect(res.statusCode).toBe(200);
    expect(res.headers['accept-ranges']).toBe('bytes');
    expect(res.rawPayload.length).toBe(bundle.manifest.artifact.length);
    expect(sha256Hex(res.rawPayload)).toBe(bundle.manifest.artifact.sha256);
  });

  it('bytes=0-9 -> 206, Content-Range, 10 bytes', async () => {
    const full = (await get(bundle.manifest.artifact.sha256)).rawPayload;
    const res = await get(bundle.manifest.artifact.sha256, 'bytes=0-9');
    expect(res.statusCode).toBe(206);
    expect(res.headers['content-range']).toBe(`bytes 0-9/${full.length}`);
    expect(Number(res.headers['content-length'])).toBe(10);
    expect(res.rawPayload.length).toBe(10);
    expect(res.rawPayload.equals(full.subarray(0, 10))).toBe(true);
  });

  it('bytes=-5 -> the last 5 bytes', async () => {
    const full = (await get(bundle.manifest.artifact.sha256)).rawPayload;
    const res = await get(bundle.manifest.artifact.sha256, 'bytes=-5');
    expect(res.statusCode).toBe(206);
    expect(res.headers['content-range']).toBe(`bytes ${full.length - 5}-${full.length - 1}/${full.length}`);
    expect(res.rawPayload.equals(full.subarray(full.length - 5))).toBe(true);
  });

  it('bytes=10- -> the rest', async () => {
    const full = (await get(bundle.manifest.artifact.sha256)).rawPayload;
    const res = await get(bundle.manifest.artifact.sha256, 'bytes=10-');
    expect(res.statusCode).toBe(206);
    expect(res.headers['content-range']).toBe(`bytes 10-${full.length - 1}/${full.length}`);
    expect(res.rawPayload.equals(full.subarray(10))).toBe(true);
  });

  it('an end past the size is clipped to the last byte', async () => {
    const full = (await get(bundle.manifest.artifact.sha256)).rawPayload;
    const res = await get(bundle.manifest.artifact.sha256, `bytes=${full.length - 3}-${full.length + 100}`);
    expect(res.statusCode).toBe(206);
    expect(res.rawPayload.equals(full.subarray(full.length - 3))).toBe(true);
  });

  it('the concatenation of ranged parts equals the full download', async () => {
    const full = (await get(bundle.manifest.artifact.sha256)).rawPayload;
    const parts: Buffer[] = [];
    const step = 97;
    for (let start = 0; start < full.length; start += step) {
      const end = Math.min(start + step - 1, full.length - 1);
      const res = await get(bundle.manifest.artifact.sha256, `bytes=${start}-${end}`);
      expect(res.statusCode).toBe(206);
      expect(res.headers['content-range']).toBe(`bytes ${start}-${end}/${full.length}`);
      parts.push(res.rawPayload);
    }
    expect(parts.length).toBeGreaterThan(2);
    const joined = Buffer.concat(parts);
    expect(joined.equals(full)).toBe(true);
    expect(sha256Hex(joined)).toBe(bundle.manifest.artifact.sha256);
    // resume pattern: a head, then bytes=N- for the rest
    const head = (await get(bundle.manifest.artifact.sha256, 'bytes=0-99')).rawPayload;
    const tail = (await get(bundle.manifest.artifact.sha256, 'bytes=100-')).rawPayload;
    expect(Buffer.concat([head, tail]).equals(full)).toBe(true);
  });

  it.each([
    ['start past the end', (n: number) => `bytes=${n}-`],
    ['start far past the end', (n: number) => `bytes=${n + 1000}-${n + 2000}`],
    ['start after end', () => 'bytes=9-3'],
    ['zero-length suffix', () => 'bytes=-0'],
    ['no numbers', () => 'bytes=-'],
    ['other unit', () => 'items=0-9'],
    ['multiple ranges', () => 'bytes=0-1,4-5'],
    ['garbage', () => 'bytes=abc'],
  ])('unsatisfiable or unsupported range (%s) -> 416 with Content-Range bytes */size', async (_name, make) => {
    const size = bundle.manifest.artifact.length;
    const res = await get(bundle.manifest.artifact.sha256, make(size));
    await expectRefused(server.app, `range ${make(size)}`, res, 416, /range|satisf/i);
    expect(res.headers['content-range']).toBe(`bytes */${size}`);
  });
});

describe('devices', () => {
  it('GET of an unknown device -> 404 naming it', async () => {
    await expectRefused(server.app, 'unknown device', await server.app.inject({ method: 'GET', url: '/v1/devices/no-such-device' }), 404, /no-such-device/);
  });

  it('GET of a bad device id -> 400 naming the parameter', async () => {
    await expectRefused(server.app, 'bad device id', await server.app.inject({ method: 'GET', url: '/v1/devices/..%2F..%2Fetc' }), 400, /deviceId/);
  });

  it('an unknown route -> 404 JSON', async () => {
    await expectRefused(server.app, 'unknown route', await server.app.inject({ method: 'GET', url: '/v1/nope' }), 404, /no route/);
  });
});

describe('no leaks', () => {
  it('no response body contained a stack trace or a path of the server data folder', () => {
    expect(bodies.length).toBeGreaterThan(40);
    const dataDir = join(server.dir, 'server');
    for (const { what, body } of bodies) {
      expect(leakProblems(body, [server.dir, dataDir]), `${what}: ${body}`).toEqual([]);
    }
    // the checker itself detects what it looks for
    expect(leakProblems(`{"message":"ENOENT: ${dataDir}/blobs/x"}`, [dataDir]).length).toBeGreaterThan(0);
    expect(leakProblems('Error: x\n    at foo (file.js:1:1)', []).length).toBeGreaterThan(0);
  });
});

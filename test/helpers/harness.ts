// A real fleet server on loopback for tests: temp data folder, ephemeral HTTP and MQTT ports.
//
// Authentication is on, as in production. The harness gets its credentials the way an operator does:
// it starts the server with a bootstrap admin token (config bootstrapAdminToken, FLEET_BOOTSTRAP_TOKEN)
// and its API client (app.inject) sends that token on every request that does not carry its own
// authorization header. A request with `x-fleet-actor: <name>` is sent with an operator token of that
// name, made through POST /v1/tokens (the server never trusts the header itself). `anonInject` sends
// requests exactly as given.
//
// Devices are enrolled as in production (allowUnenrolledDevices off, the product default): each gets an
// Ed25519 key pair in its data folder and its public key is registered through POST /v1/enroll
// (enrollKeys; startFleet and test/agent/fixture.ts startAgent do it for their devices). Agents in child
// processes enroll themselves on first start with `enrollmentToken: server.enrollmentToken` in their
// config. A test opts in to allowUnenrolledDevices only where it tests that development switch.
import type { FastifyInstance, InjectOptions } from 'fastify';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildServer } from '../../server/app.ts';
import type { BundleRequest } from '../../server/bundles/bundle-builder.ts';
import { b64 } from '../../shared/crypto.ts';
import { newSecret } from '../../server/auth/secrets.ts';
import { SimulatedFleet, type FleetOptions } from '../../firmware-sim/fleet.ts';
import { loadOrCreateDeviceKey, type DeviceKey } from '../../device-agent/identity.ts';
import { writeDevCa, writeIssued } from '../../cli/dev-ca.ts';

export interface TestServer {
  app: FastifyInstance;
  dir: string;
  baseUrl: string;
  mqttUrl: string;
  rootPublicKey: string;
  /** with tls: the dev CA's certificate (baseUrl is https://, mqttUrl mqtts://); agents pin it as caFile */
  caFile?: string;
  /** the bootstrap admin token the harness's app.inject sends by default */
  adminToken: string;
  /** an enrollment token good for many devices, for agents that enroll themselves on first start (config enrollmentToken) */
  enrollmentToken: string;
  /** app.inject as it was: no token added */
  anonInject: (opts: InjectOptions) => ReturnType<FastifyInstance['inject']>;
  close(): Promise<void>;
}

/**
 * Make app.inject send `authorization: Bearer <token>` unless the request has its own authorization
 * header (a test client holding a token, not a server-side bypass: the server verifies it as any other).
 */
export function withBearer(app: FastifyInstance, token: string): (opts: InjectOptions) => ReturnType<FastifyInstance['inject']> {
  const anon = app.inject.bind(app) as (opts: InjectOptions) => ReturnType<FastifyInstance['inject']>;
  const actorTokens = new Map<string, Promise<string>>();
  const actorToken = (name: string) => {
    let t = actorTokens.get(name);
    if (!t) {
      t = anon({ method: 'POST', url: '/v1/tokens', headers: { authorization: `Bearer ${token}` }, payload: { name, role: 'operator' } }).then((r) => {
        if (r.statusCode !== 201) throw new Error(`token for ${name}: ${r.statusCode} ${r.body}`);
        return r.json().token as string;
      });
      actorTokens.set(name, t);
    }
    return t;
  };
  const inject = (async (opts: InjectOptions | string) => {
    const o: InjectOptions = typeof opts === 'string' ? { url: opts } : opts;
    const headers = { ...(o.headers ?? {}) } as Record<string, string>;
    if (!Object.keys(headers).some((h) => h.toLowerCase() === 'authorization')) {
      const actor = headers['x-fleet-actor'];
      headers.authorization = `Bearer ${typeof actor === 'string' ? await actorToken(actor) : token}`;
    }
    return anon({ ...o, headers });
  }) as unknown as FastifyInstance['inject'];
  app.inject = inject;
  return anon;
}

export function tempDir(prefix = 'fleet-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export interface DevTls { caDir: string; caFile: string; certFile: string; keyFile: string }
let devTlsMade: DevTls | null = null;

/**
 * A dev CA and a server certificate for 127.0.0.1, ::1 and localhost, made once per test file (vitest
 * runs each file in its own module graph) with the code fleetctl dev-ca runs; removed when the process exits.
 */
export function devTls(): DevTls {
  if (devTlsMade) return devTlsMade;
  const caDir = tempDir('fleet-dev-ca-');
  process.once('exit', () => rmSync(caDir, { recursive: true, force: true }));
  const { certFile: caFile } = writeDevCa(caDir);
  const { certFile, keyFile } = writeIssued(caDir, join(caDir, 'server'), { name: 'localhost', dns: ['localhost'], ips: ['127.0.0.1', '::1'] });
  devTlsMade = { caDir, caFile, certFile, keyFile };
  return devTlsMade;
}

/** tls: serve HTTPS and MQTTS (TLS only, as in production) with devTls()'s certificate, or with the given files */
export async function startTestServer(opts: { dir?: string; keep?: boolean; httpPort?: number; mqttPort?: number; config?: Record<string, unknown>; tls?: boolean | DevTls } = {}): Promise<TestServer> {
  const dir = opts.dir ?? tempDir();
  const tls = opts.tls === true ? devTls() : opts.tls || null;
  const adminToken = newSecret('apiToken');
  const app = await buildServer({
    dataDir: join(dir, 'server'), httpPort: 0, mqttPort: opts.mqttPort ?? 0, logLevel: 'silent', rolloutTickMs: 200,
    bootstrapAdminToken: adminToken, allowUnenrolledDevices: false,
    ...(tls ? { tlsCertFile: tls.certFile, tlsKeyFile: tls.keyFile } : {}), ...opts.config,
  });
  const anonInject = withBearer(app, adminToken);
  const made = await app.inject({ method: 'POST', url: '/v1/enrollment-tokens', payload: { uses: 100_000, ttlSeconds: 86_400 } });
  if (made.statusCode !== 201) throw new Error(`enrollment token: ${made.statusCode} ${made.body}`);
  await app.listen({ host: '127.0.0.1', port: opts.httpPort ?? 0 });
  const port = (app.server.address() as { port: number }).port;
  return {
    app, dir,
    baseUrl: `${tls ? 'https' : 'http'}://127.0.0.1:${port}`,
    mqttUrl: `${tls ? 'mqtts' : 'mqtt'}://127.0.0.1:${app.fleet.broker.port}`,
    ...(tls ? { caFile: tls.caFile } : {}),
    rootPublicKey: b64.encode(app.fleet.keys.rootPublicKey),
    adminToken, anonInject, enrollmentToken: made.json().token as string,
    async close() {
      await app.close();
      if (!opts.keep && !opts.dir) rmSync(dir, { recursive: true, force: true });
    },
  };
}

export async function uploadModel(server: TestServer, bytes: Uint8Array): Promise<{ sha256: string; info: unknown }> {
  const res = await server.app.inject({ method: 'POST', url: '/v1/uploads', headers: { 'content-type': 'application/octet-stream' }, payload: Buffer.from(bytes) });
  if (res.statusCode !== 201) throw new Error(`upload failed: ${res.statusCode} ${res.body}`);
  return res.json();
}

export async function pushBundle(server: TestServer, modelId: string, bytes: Uint8Array, req: Omit<BundleRequest, 'uploadSha256'> = { quantize: 'none' }) {
  const { sha256 } = await uploadModel(server, bytes);
  const res = await server.app.inject({ method: 'POST', url: `/v1/models/${modelId}/bundles`, payload: { uploadSha256: sha256, ...req } });
  if (res.statusCode !== 201) throw new Error(`bundle failed: ${res.statusCode} ${res.body}`);
  return res.json() as { manifestSha256: string; version: number; manifest: { artifact: { sha256: string; length: number } } };
}

export async function assign(server: TestServer, manifestSha256: string, deviceIds: string[]) {
  const res = await server.app.inject({ method: 'POST', url: '/v1/assignments', payload: { manifestSha256, deviceIds } });
  if (res.statusCode !== 202) throw new Error(`assign failed: ${res.statusCode} ${res.body}`);
  return res.json();
}

/** Devices enrolled with a key, by server folder: a restarted server on the same folder keeps them. */
const enrolledKeys = new Map<string, Map<string, DeviceKey>>();

/**
 * Enroll devices with key pairs, as a factory line would: each device's key pair is made in its data
 * folder (device-agent/identity.ts, where the agent finds it), an admin makes an enrollment token good
 * for this many devices, and the public keys are registered in one batch (POST /v1/enroll, up to 10,000
 * a request). Devices already enrolled here are left as they are.
 */
export async function enrollKeys(server: TestServer, devices: { deviceId: string; dataDir: string }[]): Promise<Map<string, DeviceKey>> {
  const keys = enrolledKeys.get(server.dir) ?? new Map<string, DeviceKey>();
  enrolledKeys.set(server.dir, keys);
  const missing = devices.filter((d) => !keys.has(d.deviceId));
  for (let i = 0; i < missing.length; i += 10_000) {
    const batch = missing.slice(i, i + 10_000).map((d) => ({ deviceId: d.deviceId, key: loadOrCreateDeviceKey(d.dataDir, false) }));
    const tok = await server.app.inject({ method: 'POST', url: '/v1/enrollment-tokens', payload: { uses: batch.length, ttlSeconds: 600 } });
    if (tok.statusCode !== 201) throw new Error(`enrollment token: ${tok.statusCode} ${tok.body}`);
    const res = await server.anonInject({ method: 'POST', url: '/v1/enroll', payload: { enrollmentToken: tok.json().token, devices: batch.map((d) => ({ deviceId: d.deviceId, publicKey: d.key.publicKey })) } });
    if (res.statusCode !== 201) throw new Error(`enroll: ${res.statusCode} ${res.body}`);
    for (const d of batch) keys.set(d.deviceId, d.key);
  }
  return new Map(devices.map((d) => [d.deviceId, keys.get(d.deviceId)!]));
}

/** Device secrets by server folder: a restarted server on the same folder keeps its enrolled devices. */
const enrolled = new Map<string, Map<string, string>>();

/**
 * Legacy bearer secrets (POST /v1/enroll with deviceIds: the path for brokers that cannot check
 * signatures): for tests of that path and of raw MQTT clients. Devices already enrolled here keep theirs.
 */
export async function enrollDevices(server: TestServer, deviceIds: string[]): Promise<Map<string, string>> {
  const secrets = enrolled.get(server.dir) ?? new Map<string, string>();
  enrolled.set(server.dir, secrets);
  const missing = deviceIds.filter((d) => !secrets.has(d));
  for (let i = 0; i < missing.length; i += 10_000) {
    const batch = missing.slice(i, i + 10_000);
    const tok = await server.app.inject({ method: 'POST', url: '/v1/enrollment-tokens', payload: { uses: batch.length, ttlSeconds: 600 } });
    if (tok.statusCode !== 201) throw new Error(`enrollment token: ${tok.statusCode} ${tok.body}`);
    const res = await server.anonInject({ method: 'POST', url: '/v1/enroll', payload: { enrollmentToken: tok.json().token, deviceIds: batch } });
    if (res.statusCode !== 201) throw new Error(`enroll: ${res.statusCode} ${res.body}`);
    for (const d of res.json().devices as { deviceId: string; secret: string }[]) secrets.set(d.deviceId, d.secret);
  }
  return secrets;
}

export async function startFleet(server: TestServer, opts: Partial<FleetOptions> & { count: number }): Promise<SimulatedFleet> {
  const baseDir = opts.baseDir ?? join(server.dir, 'devices');
  const ids = Array.from({ length: opts.count }, (_, i) => `${opts.idPrefix ?? 'sim'}-${String((opts.firstIndex ?? 0) + i).padStart(5, '0')}`);
  // each device's key pair in its own data folder, where its agent finds it
  await enrollKeys(server, ids.map((deviceId) => ({ deviceId, dataDir: join(baseDir, deviceId) })));
  const fleet = new SimulatedFleet({
    baseDir, mqttUrl: server.mqttUrl, serverUrl: server.baseUrl, rootPublicKey: server.rootPublicKey, caFile: server.caFile, ...opts,
  });
  await fleet.start();
  return fleet;
}

// A real fleet server on loopback for tests: temp data folder, ephemeral HTTP and MQTT ports.
import type { FastifyInstance } from 'fastify';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildServer } from '../../server/app.ts';
import type { BundleRequest } from '../../server/bundles/bundle-builder.ts';
import { b64 } from '../../shared/crypto.ts';
import { SimulatedFleet, type FleetOptions } from '../../firmware-sim/fleet.ts';

export interface TestServer {
  app: FastifyInstance;
  dir: string;
  baseUrl: string;
  mqttUrl: string;
  rootPublicKey: string;
  close(): Promise<void>;
}

export function tempDir(prefix = 'fleet-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export async function startTestServer(opts: { dir?: string; keep?: boolean; httpPort?: number; mqttPort?: number; config?: Record<string, unknown> } = {}): Promise<TestServer> {
  const dir = opts.dir ?? tempDir();
  const app = await buildServer({ dataDir: join(dir, 'server'), httpPort: 0, mqttPort: opts.mqttPort ?? 0, logLevel: 'silent', rolloutTickMs: 200, ...opts.config });
  await app.listen({ host: '127.0.0.1', port: opts.httpPort ?? 0 });
  const port = (app.server.address() as { port: number }).port;
  return {
    app, dir,
    baseUrl: `http://127.0.0.1:${port}`,
    mqttUrl: `mqtt://127.0.0.1:${app.fleet.broker.port}`,
    rootPublicKey: b64.encode(app.fleet.keys.rootPublicKey),
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

export async function startFleet(server: TestServer, opts: Partial<FleetOptions> & { count: number }): Promise<SimulatedFleet> {
  const fleet = new SimulatedFleet({
    baseDir: join(server.dir, 'devices'), mqttUrl: server.mqttUrl, serverUrl: server.baseUrl, rootPublicKey: server.rootPublicKey, ...opts,
  });
  await fleet.start();
  return fleet;
}

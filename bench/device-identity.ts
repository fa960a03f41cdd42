// What key-pair identity costs a fleet of 10,000 simulated devices: making each device's Ed25519 key
// pair and writing it to its data folder (node:crypto, no fsync: enroll-fleet.ts), registering the
// 10,000 public keys in one POST /v1/enroll, the agent signing a token, and the server verifying a
// CONNECT token (first use of a device parses its key once; later ones hit the KeyObject cache).
//   npx tsx bench/device-identity.ts [devices]
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readDeviceKey } from '../device-agent/identity.ts';
import { enrollFleet } from '../firmware-sim/enroll-fleet.ts';
import { buildServer } from '../server/app.ts';
import { newSecret } from '../server/auth/secrets.ts';
import { makeDeviceToken } from '../shared/device-token.ts';

export async function benchDeviceIdentity(devices = 10_000) {
  const dir = mkdtempSync(join(tmpdir(), 'fleet-bench-identity-'));
  const adminToken = newSecret('apiToken');
  const app = await buildServer({ dataDir: join(dir, 'server'), httpPort: 0, mqttPort: 0, logLevel: 'silent', bootstrapAdminToken: adminToken });
  try {
    const ids = Array.from({ length: devices }, (_, i) => `id-${String(i).padStart(5, '0')}`);
    const enrolled = await enrollFleet((o) => app.inject({ ...o, payload: o.payload as object, headers: { authorization: `Bearer ${adminToken}` } }), join(dir, 'devices'), ids);
    const keys = ids.map((id) => readDeviceKey(join(dir, 'devices', id))!);
    const now = Date.now();
    const t0 = performance.now();
    const tokens = ids.map((id, i) => makeDeviceToken(keys[i].privateKey, { deviceId: id, aud: 'mqtt', nowMs: now, lifetimeSeconds: 300 }));
    const signMs = performance.now() - t0;
    const verify = () => {
      const t = performance.now();
      let ok = 0;
      for (let i = 0; i < ids.length; i++) if (app.fleet.credentials.verifyToken(tokens[i], 'mqtt', ids[i]).ok) ok++;
      return { ms: performance.now() - t, ok };
    };
    const first = verify(); // parses each device's public key once
    for (let i = 0; i < ids.length; i++) tokens[i] = makeDeviceToken(keys[i].privateKey, { deviceId: ids[i], aud: 'mqtt', nowMs: now, lifetimeSeconds: 300 });
    const cached = verify();
    if (first.ok !== devices || cached.ok !== devices) throw new Error(`verified ${first.ok} / ${cached.ok} of ${devices}`);
    return {
      devices,
      keygenAndWriteMs: enrolled.keygenMs,
      enrollOneRequestMs: enrolled.enrollMs,
      agentSignTokenUs: Math.round((signMs / devices) * 1000 * 10) / 10,
      serverVerifyFirstUs: Math.round((first.ms / devices) * 1000 * 10) / 10,
      serverVerifyCachedUs: Math.round((cached.ms / devices) * 1000 * 10) / 10,
      serverVerifiesPerSecond: Math.round(devices / (cached.ms / 1000)),
    };
  } finally {
    await app.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  console.log(JSON.stringify(await benchDeviceIdentity(Number(process.argv[2] ?? 10_000)), null, 2));
}

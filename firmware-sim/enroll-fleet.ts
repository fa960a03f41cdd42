// Enrolls a simulated fleet the way a factory line would: each device's Ed25519 key pair is made in its
// own data folder (device-agent/identity.ts, where its agent finds it), an admin makes one enrollment
// token per batch, and the public keys are registered in batches of 10,000 (POST /v1/enroll).
import { join } from 'node:path';
import { loadOrCreateDeviceKey } from '../device-agent/identity.ts';

export type AdminCall = (o: { method: 'POST'; url: string; payload: unknown }) => Promise<{ statusCode: number; body: string; json(): any }>;

export interface EnrolledFleet { devices: number; keygenMs: number; enrollMs: number }

export async function enrollFleet(call: AdminCall, baseDir: string, deviceIds: string[]): Promise<EnrolledFleet> {
  const t0 = performance.now();
  // no fsync per key file: ten thousand fsyncs would be the whole cost (a real device makes one key, once)
  const keys = deviceIds.map((deviceId) => ({ deviceId, publicKey: loadOrCreateDeviceKey(join(baseDir, deviceId), false).publicKey }));
  const t1 = performance.now();
  for (let i = 0; i < keys.length; i += 10_000) {
    const batch = keys.slice(i, i + 10_000);
    const tok = await call({ method: 'POST', url: '/v1/enrollment-tokens', payload: { uses: batch.length, ttlSeconds: 3600 } });
    if (tok.statusCode !== 201) throw new Error(`enrollment token refused: ${tok.body}`);
    const res = await call({ method: 'POST', url: '/v1/enroll', payload: { enrollmentToken: tok.json().token, devices: batch } });
    if (res.statusCode !== 201) throw new Error(`enrollment refused: ${res.body}`);
  }
  return { devices: keys.length, keygenMs: Math.round(t1 - t0), enrollMs: Math.round(performance.now() - t1) };
}

/**
 * Enrolls devices with bearer secrets (POST /v1/enroll with deviceIds), as a fleet on an external broker
 * must: the broker checks passwords and cannot verify the key pair's signed tokens (docs/brokers.md).
 * Returns device id -> secret, which each simulated agent gets as its deviceSecret.
 */
export async function enrollFleetWithSecrets(call: AdminCall, deviceIds: string[]): Promise<EnrolledFleet & { secrets: Record<string, string> }> {
  const t0 = performance.now();
  const secrets: Record<string, string> = {};
  for (let i = 0; i < deviceIds.length; i += 5000) {
    const batch = deviceIds.slice(i, i + 5000);
    const tok = await call({ method: 'POST', url: '/v1/enrollment-tokens', payload: { uses: batch.length, ttlSeconds: 3600 } });
    if (tok.statusCode !== 201) throw new Error(`enrollment token refused: ${tok.body}`);
    const res = await call({ method: 'POST', url: '/v1/enroll', payload: { enrollmentToken: tok.json().token, deviceIds: batch } });
    if (res.statusCode !== 201) throw new Error(`enrollment refused: ${res.body}`);
    for (const d of res.json().devices as { deviceId: string; secret: string }[]) secrets[d.deviceId] = d.secret;
  }
  return { devices: deviceIds.length, keygenMs: 0, enrollMs: Math.round(performance.now() - t0), secrets };
}

// The device's own identity: an Ed25519 key pair made on the device, its private half in
// <dataDir>/device-key.pem (PKCS#8, mode 0600), never sent anywhere. Enrollment registers the public
// half (POST /v1/enroll); from then on the agent proves who it is with short-lived tokens it signs
// (shared/device-token.ts): one per MQTT CONNECT, one for the artifact downloads of up to 30 s.
import { createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeDeviceToken, newDeviceKeyPair, rawPublicKey, type TokenAudience } from '../shared/device-token.ts';
import { writeFileDurable } from './durable-file.ts';

export const DEVICE_KEY_FILE = 'device-key.pem';
export const ENROLLED_FILE = 'enrolled.json';

export interface DeviceKey { privateKey: KeyObject; publicKey: string }

export function readDeviceKey(dataDir: string): DeviceKey | null {
  const path = join(dataDir, DEVICE_KEY_FILE);
  if (!existsSync(path)) return null;
  const privateKey = createPrivateKey(readFileSync(path));
  if (privateKey.asymmetricKeyType !== 'ed25519') throw new Error(`${path} is not an Ed25519 private key`);
  return { privateKey, publicKey: rawPublicKey(createPublicKey(privateKey)) };
}

/**
 * The device's key pair, made (and written 0600) if the data folder has none yet. `fsync = false` only
 * for simulated fleets (ten thousand fsyncs would be the whole cost of making their keys).
 */
export function loadOrCreateDeviceKey(dataDir: string, fsync = true): DeviceKey {
  const found = readDeviceKey(dataDir);
  if (found) return found;
  mkdirSync(dataDir, { recursive: true });
  const kp = newDeviceKeyPair();
  writeFileDurable(join(dataDir, DEVICE_KEY_FILE), kp.privateKey.export({ format: 'pem', type: 'pkcs8' }) as string, fsync);
  return kp;
}

export function isEnrolled(dataDir: string): boolean {
  return existsSync(join(dataDir, ENROLLED_FILE));
}

/** how long the agent presents the same artifacts token (credential) */
export const ARTIFACTS_TOKEN_REUSE_MS = 30_000;

/** The agent's credential: tokens from its key, or a legacy bearer secret, or nothing (development). */
export class DeviceIdentity {
  /** server time minus device time, learned when the server refused a token (shared/device-token.ts) */
  clockOffsetMs = 0;

  constructor(readonly deviceId: string, private readonly key: DeviceKey | null, private readonly secret: string | undefined,
    private readonly now: () => number, private readonly lifetimeSeconds: number) {}

  get kind(): 'key' | 'secret' | 'none' { return this.key ? 'key' : this.secret ? 'secret' : 'none'; }

  /** the last artifacts token, reused while young (see credential) */
  private artifacts: { token: string; fromMs: number; offsetMs: number } | null = null;

  /**
   * What goes in the Authorization header or the MQTT password; undefined: none. An MQTT token is new
   * every time (the server accepts each once). An artifacts token is reused for the requests of the next
   * ARTIFACTS_TOKEN_REUSE_MS (at most a quarter of its lifetime, so it has most of its life left): one
   * update's artifact and golden-set downloads share one token, one signature here and one Ed25519 check
   * on the server instead of two each (issue 13). A changed clock offset makes a new one at once.
   */
  credential(aud: TokenAudience): string | undefined {
    if (!this.key) return this.secret;
    const now = this.now();
    if (aud === 'artifacts') {
      const a = this.artifacts;
      const reuseMs = Math.min(ARTIFACTS_TOKEN_REUSE_MS, (this.lifetimeSeconds * 1000) / 4);
      if (a && a.offsetMs === this.clockOffsetMs && now >= a.fromMs && now - a.fromMs < reuseMs) return a.token;
    }
    const token = makeDeviceToken(this.key.privateKey, { deviceId: this.deviceId, aud, nowMs: now + this.clockOffsetMs, lifetimeSeconds: this.lifetimeSeconds });
    if (aud === 'artifacts') this.artifacts = { token, fromMs: now, offsetMs: this.clockOffsetMs };
    return token;
  }

  bearer(): string | undefined {
    const c = this.credential('artifacts');
    return c ? `Bearer ${c}` : undefined;
  }

  /**
   * A device whose clock is off (no RTC, no NTP yet) makes tokens the server refuses (EXPIRED or
   * NOT_YET_VALID). After a refusal the agent reads the server's time from the Date header of GET
   * /healthz and stamps its tokens with that. Without TLS this header is not authenticated (see
   * docs/security.md); the device's own clock is not changed.
   */
  async learnServerClock(serverUrl: string, fetchFn: typeof fetch = fetch): Promise<number | null> {
    if (!this.key) return null;
    try {
      const before = this.now();
      const res = await fetchFn(`${serverUrl.replace(/\/$/, '')}/healthz`, { signal: AbortSignal.timeout(5000) });
      await res.body?.cancel();
      const date = Date.parse(res.headers.get('date') ?? '');
      if (!Number.isFinite(date)) return null;
      const mid = (before + this.now()) / 2;
      // the Date header has whole seconds: a correction under 2 s is noise
      const offset = date + 500 - mid;
      this.clockOffsetMs = Math.abs(offset) < 2000 ? 0 : Math.round(offset);
      return this.clockOffsetMs;
    } catch {
      return null;
    }
  }
}

/**
 * Enroll this device: make its key pair (if it has none) and register the public key with an
 * enrollment token. On success <dataDir>/enrolled.json records it, so the agent does not enroll again.
 */
export async function enrollDevice(o: { serverUrl: string; deviceId: string; dataDir: string; enrollmentToken: string; fetch?: typeof fetch }): Promise<{ publicKey: string }> {
  const key = loadOrCreateDeviceKey(o.dataDir);
  const res = await (o.fetch ?? fetch)(`${o.serverUrl.replace(/\/$/, '')}/v1/enroll`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, signal: AbortSignal.timeout(30_000),
    body: JSON.stringify({ enrollmentToken: o.enrollmentToken, devices: [{ deviceId: o.deviceId, publicKey: key.publicKey }] }),
  });
  const text = await res.text();
  if (res.status !== 201) {
    let message = text;
    try { const j = JSON.parse(text) as { error?: string; message?: string }; message = `${j.error}: ${j.message}`; } catch { /* not JSON */ }
    throw new Error(`enrollment of ${o.deviceId} refused (HTTP ${res.status}): ${message}`);
  }
  writeFileDurable(join(o.dataDir, ENROLLED_FILE), `${JSON.stringify({ deviceId: o.deviceId, serverUrl: o.serverUrl, publicKey: key.publicKey, at: new Date().toISOString() })}\n`);
  return { publicKey: key.publicKey };
}

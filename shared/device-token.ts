// Device identity by key pair: a device holds an Ed25519 private key (its data folder, 0600) and the
// server holds only the public key. To connect to the broker or download an artifact the device makes
// a short-lived token itself and signs it:
//   fleet_dt_<base64url(JSON {deviceId, aud, iat, exp, nonce})>.<base64url(Ed25519 signature)>
// The signature covers the ASCII bytes before the dot (prefix included). No reusable secret crosses
// the network: a token names one audience ('mqtt' or 'artifacts') and lives a few minutes; the server
// caps the lifetime and accepts an MQTT token once (its nonce). Signing and verifying are node:crypto
// (RFC 8032, the same signatures tweetnacl makes, ~350x faster).
import { createPublicKey, generateKeyPairSync, randomBytes, sign, verify, type KeyObject } from 'node:crypto';

export const DEVICE_TOKEN_PREFIX = 'fleet_dt_';
export const TOKEN_AUDIENCES = ['mqtt', 'artifacts'] as const;
export type TokenAudience = (typeof TOKEN_AUDIENCES)[number];
/** longest token accepted anywhere (a 64-character device id makes about 330) */
export const MAX_DEVICE_TOKEN_LENGTH = 512;

export interface DeviceTokenClaims { deviceId: string; aud: TokenAudience; iat: number; exp: number; nonce: string }

/** Why a token was refused (logged, sent in the 401 message, emitted to tests). */
export type TokenRefusal =
  | 'MALFORMED' // not a fleet_dt_ token, bad base64/JSON, fields missing
  | 'WRONG_DEVICE' // names another device than the one connecting (MQTT client id)
  | 'UNKNOWN_DEVICE' // no key registered for this device (never enrolled, or enrolled with a bearer secret)
  | 'REVOKED' // the device's credential was revoked
  | 'BAD_SIGNATURE' // not signed by this device's registered key (tampered, or another device's key)
  | 'WRONG_AUDIENCE' // an artifacts token on MQTT, or the other way round
  | 'LIFETIME_TOO_LONG' // exp - iat over the server's maximum
  | 'NOT_YET_VALID' // iat ahead of the server's clock by more than the allowed skew
  | 'EXPIRED' // exp behind the server's clock by more than the allowed skew
  | 'REPLAYED'; // an MQTT token's nonce was used already

export type TokenCheck = { ok: true; claims: DeviceTokenClaims } | { ok: false; reason: TokenRefusal; message: string };

/** A new Ed25519 key pair; publicKey is the raw 32 bytes in base64 (the form POST /v1/enroll takes). */
export function newDeviceKeyPair(): { privateKey: KeyObject; publicKey: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return { privateKey, publicKey: rawPublicKey(publicKey) };
}

/** base64 of the raw 32-byte public key */
export function rawPublicKey(key: KeyObject): string {
  const jwk = key.export({ format: 'jwk' }) as { x?: string };
  if (!jwk.x) throw new Error('not an Ed25519 key');
  return Buffer.from(jwk.x, 'base64url').toString('base64');
}

/** A KeyObject from a raw public key in base64; throws a readable error when it is not one. */
export function publicKeyObject(b64: string): KeyObject {
  const raw = /^[A-Za-z0-9+/]{43}=$/.test(b64) ? Buffer.from(b64, 'base64') : null;
  if (!raw || raw.length !== 32) throw new Error('a public key is 32 bytes of Ed25519 in base64 (44 characters)');
  return createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: raw.toString('base64url') }, format: 'jwk' });
}

export function makeDeviceToken(privateKey: KeyObject, o: { deviceId: string; aud: TokenAudience; nowMs: number; lifetimeSeconds: number; nonce?: string }): string {
  const iat = Math.floor(o.nowMs / 1000);
  const claims: DeviceTokenClaims = { deviceId: o.deviceId, aud: o.aud, iat, exp: iat + o.lifetimeSeconds, nonce: o.nonce ?? randomBytes(12).toString('base64url') };
  const signed = DEVICE_TOKEN_PREFIX + Buffer.from(JSON.stringify(claims)).toString('base64url');
  return `${signed}.${sign(null, Buffer.from(signed), privateKey).toString('base64url')}`;
}

const B64URL = /^[A-Za-z0-9_-]+$/;

/** Split and decode without trusting anything; null when it is not a well-formed token. */
export function parseDeviceToken(token: string): { claims: DeviceTokenClaims; signed: Buffer; signature: Buffer } | null {
  if (typeof token !== 'string' || token.length > MAX_DEVICE_TOKEN_LENGTH || !token.startsWith(DEVICE_TOKEN_PREFIX)) return null;
  const dot = token.indexOf('.');
  if (dot < 0 || token.indexOf('.', dot + 1) >= 0) return null;
  const body = token.slice(DEVICE_TOKEN_PREFIX.length, dot);
  const sig = token.slice(dot + 1);
  if (!B64URL.test(body) || !B64URL.test(sig)) return null;
  const signature = Buffer.from(sig, 'base64url');
  if (signature.length !== 64) return null;
  let c: unknown;
  try { c = JSON.parse(Buffer.from(body, 'base64url').toString('utf8')); } catch { return null; }
  if (!c || typeof c !== 'object') return null;
  const { deviceId, aud, iat, exp, nonce } = c as Record<string, unknown>;
  if (typeof deviceId !== 'string' || !TOKEN_AUDIENCES.includes(aud as TokenAudience) || !Number.isInteger(iat) || !Number.isInteger(exp)
    || typeof nonce !== 'string' || nonce.length < 8 || nonce.length > 64) return null;
  return { claims: { deviceId, aud: aud as TokenAudience, iat: iat as number, exp: exp as number, nonce }, signed: Buffer.from(token.slice(0, dot)), signature };
}

export interface TokenPolicy {
  aud: TokenAudience;
  nowMs: number;
  maxLifetimeSeconds: number;
  clockSkewSeconds: number;
  /** MQTT: the client id the token must name */
  deviceId?: string;
  /** the device's registered key; 'revoked' when its credential was revoked, null when it has none */
  keyFor: (deviceId: string) => KeyObject | 'revoked' | null;
  /** signatures verified before (issue 13): the exact token text already verified with this same key object */
  verified?: VerifiedTokens;
}

/**
 * Tokens whose Ed25519 signature verified, by their exact text and the key object it verified with
 * (issue 13: an agent presents one artifacts token for its artifact and its golden set, and the second
 * Ed25519 check of the same bytes with the same key was ~5% of the server's CPU in a rollout). It only
 * remembers a fact about bytes: a token not seen before, or seen with another key object (the device's
 * key replaced or revoked since: DeviceCredentials parses a new KeyObject), is verified; every claim
 * check (audience, device, lifetime, clock) runs on every use. Bounded: entries leave a minute after
 * the check (or at the token's end, if sooner), and all of them when full (an attacker cannot add one
 * without a device's key): a few hundred bytes for each token of the last minute.
 */
/** how long a verified token is remembered at most */
export const VERIFIED_TOKEN_MS = 60_000;

export class VerifiedTokens {
  private readonly seen = new Map<string, { key: KeyObject; untilMs: number }>();
  private nextPrune = 0;
  /** uses that skipped a second Ed25519 check (tests and profiles count them) */
  hits = 0;
  constructor(private readonly limit = 50_000) {}
  has(token: string, key: KeyObject, nowMs: number): boolean {
    const e = this.seen.get(token);
    const hit = !!e && e.key === key && e.untilMs >= nowMs;
    if (hit) this.hits++;
    return hit;
  }
  add(token: string, key: KeyObject, untilMs: number, nowMs: number): void {
    if (nowMs >= this.nextPrune) {
      for (const [k, e] of this.seen) if (e.untilMs < nowMs) this.seen.delete(k);
      this.nextPrune = nowMs + 10_000;
    }
    if (this.seen.size >= this.limit) this.seen.clear();
    this.seen.set(token, { key, untilMs });
  }
  get size(): number { return this.seen.size; }
}

/**
 * Is this token genuine and good for this use? Pure apart from keyFor. The signature is checked before
 * any claim is believed, so a tampered token is BAD_SIGNATURE whatever field was changed; replay (a
 * nonce seen before) is the caller's check, after this one.
 */
export function checkDeviceToken(token: string, p: TokenPolicy): TokenCheck {
  const no = (reason: TokenRefusal, message: string): TokenCheck => ({ ok: false, reason, message });
  const t = parseDeviceToken(token);
  if (!t) return no('MALFORMED', 'not a device token (fleet_dt_<claims>.<signature>)');
  const c = t.claims;
  if (p.deviceId !== undefined && c.deviceId !== p.deviceId) return no('WRONG_DEVICE', `the token is for ${c.deviceId}, not ${p.deviceId}`);
  const key = p.keyFor(c.deviceId);
  if (key === 'revoked') return no('REVOKED', `${c.deviceId}: credential revoked`);
  if (!key) return no('UNKNOWN_DEVICE', `${c.deviceId}: no public key registered`);
  if (!p.verified?.has(token, key, p.nowMs)) {
    if (!verify(null, t.signed, key, t.signature)) return no('BAD_SIGNATURE', `${c.deviceId}: signature does not verify with the registered key`);
    // kept a minute at most (the agent reuses a token for 30 s), never past the token's own end
    p.verified?.add(token, key, Math.min((c.exp + p.clockSkewSeconds) * 1000, p.nowMs + VERIFIED_TOKEN_MS), p.nowMs);
  }
  if (c.aud !== p.aud) return no('WRONG_AUDIENCE', `a token for ${c.aud}, not ${p.aud}`);
  if (c.exp - c.iat > p.maxLifetimeSeconds || c.exp < c.iat) return no('LIFETIME_TOO_LONG', `lifetime ${c.exp - c.iat} s, the most is ${p.maxLifetimeSeconds} s`);
  const now = Math.floor(p.nowMs / 1000);
  if (c.iat > now + p.clockSkewSeconds) return no('NOT_YET_VALID', `issued ${c.iat - now} s in the future (device clock ahead?)`);
  if (c.exp < now - p.clockSkewSeconds) return no('EXPIRED', `expired ${now - c.exp} s ago`);
  return { ok: true, claims: c };
}

// The device token check (shared/device-token.ts) as a table: each refusal with its exact reason, and
// the order that makes a tampered token BAD_SIGNATURE whatever field was changed.
import { describe, expect, it } from 'vitest';
import { sign } from 'node:crypto';
import { checkDeviceToken, makeDeviceToken, newDeviceKeyPair, parseDeviceToken, publicKeyObject, type TokenPolicy } from '../../shared/device-token.ts';

const NOW = Date.parse('2026-11-30T05:00:00Z');
const a = newDeviceKeyPair();
const b = newDeviceKeyPair();
const keys: Record<string, ReturnType<typeof publicKeyObject> | 'revoked'> = { 'dev-a': publicKeyObject(a.publicKey), 'dev-b': publicKeyObject(b.publicKey), 'dev-r': publicKeyObject(a.publicKey) };
keys['dev-r'] = 'revoked';
const policy = (over: Partial<TokenPolicy> = {}): TokenPolicy => ({ aud: 'mqtt', nowMs: NOW, maxLifetimeSeconds: 600, clockSkewSeconds: 60, keyFor: (id) => keys[id] ?? null, ...over });
const tok = (o: { key?: typeof a; deviceId?: string; aud?: 'mqtt' | 'artifacts'; at?: number; life?: number } = {}) =>
  makeDeviceToken((o.key ?? a).privateKey, { deviceId: o.deviceId ?? 'dev-a', aud: o.aud ?? 'mqtt', nowMs: o.at ?? NOW, lifetimeSeconds: o.life ?? 300 });

/** the token with its claims rewritten and the original signature kept */
function tampered(token: string, change: (c: Record<string, unknown>) => void): string {
  const [signed, sig] = token.split('.');
  const claims = JSON.parse(Buffer.from(signed.slice('fleet_dt_'.length), 'base64url').toString());
  change(claims);
  return `fleet_dt_${Buffer.from(JSON.stringify(claims)).toString('base64url')}.${sig}`;
}

/** claims signed properly by a's key, whatever they say */
function signedRaw(claims: object, key = a): string {
  const signed = `fleet_dt_${Buffer.from(JSON.stringify(claims)).toString('base64url')}`;
  return `${signed}.${sign(null, Buffer.from(signed), key.privateKey).toString('base64url')}`;
}

describe('checkDeviceToken', () => {
  it('a fresh token of the registered key, for its audience and device, is accepted', () => {
    const r = checkDeviceToken(tok(), policy({ deviceId: 'dev-a' }));
    expect(r.ok && r.claims.deviceId).toBe('dev-a');
    expect(checkDeviceToken(tok({ aud: 'artifacts' }), policy({ aud: 'artifacts' })).ok).toBe(true);
    // within the skew either way
    expect(checkDeviceToken(tok({ at: NOW + 59_000 }), policy()).ok).toBe(true);
    expect(checkDeviceToken(tok({ at: NOW - 359_000 }), policy()).ok).toBe(true);
  });

  it.each([
    ['expired (exp 61 s behind, skew 60 s)', () => tok({ at: NOW - 361_000 }), {}, 'EXPIRED'],
    ['issued in the future beyond the skew', () => tok({ at: NOW + 61_000 }), {}, 'NOT_YET_VALID'],
    ['an artifacts token on MQTT', () => tok({ aud: 'artifacts' }), {}, 'WRONG_AUDIENCE'],
    ['an MQTT token on artifacts', () => tok(), { aud: 'artifacts' as const }, 'WRONG_AUDIENCE'],
    ['signed by another device\'s key', () => tok({ key: b }), {}, 'BAD_SIGNATURE'],
    ['tampered payload: exp extended', () => tampered(tok(), (c) => { c.exp = (c.exp as number) + 3600; }), {}, 'BAD_SIGNATURE'],
    ['tampered payload: audience changed', () => tampered(tok({ aud: 'artifacts' }), (c) => { c.aud = 'mqtt'; }), {}, 'BAD_SIGNATURE'],
    ['tampered payload: device id changed to b', () => tampered(tok(), (c) => { c.deviceId = 'dev-b'; }), {}, 'BAD_SIGNATURE'],
    ['another device\'s genuine token for this client id', () => tok({ key: b, deviceId: 'dev-b' }), { deviceId: 'dev-a' }, 'WRONG_DEVICE'],
    ['a lifetime over the server\'s maximum', () => tok({ life: 601 }), {}, 'LIFETIME_TOO_LONG'],
    ['exp before iat', () => signedRaw({ deviceId: 'dev-a', aud: 'mqtt', iat: NOW / 1000, exp: NOW / 1000 - 1, nonce: 'n0nce-123' }), {}, 'LIFETIME_TOO_LONG'],
    ['a revoked device', () => tok({ deviceId: 'dev-r' }), {}, 'REVOKED'],
    ['a device with no key registered', () => tok({ deviceId: 'dev-x' }), {}, 'UNKNOWN_DEVICE'],
    ['a legacy secret', () => 'fleet_ds_' + 'A'.repeat(43), {}, 'MALFORMED'],
    ['no signature', () => tok().split('.')[0], {}, 'MALFORMED'],
    ['a short signature', () => `${tok().split('.')[0]}.${Buffer.alloc(63).toString('base64url')}`, {}, 'MALFORMED'],
    ['claims that are not JSON', () => `fleet_dt_${Buffer.from('{nope').toString('base64url')}.${Buffer.alloc(64).toString('base64url')}`, {}, 'MALFORMED'],
    ['a missing nonce', () => signedRaw({ deviceId: 'dev-a', aud: 'mqtt', iat: NOW / 1000, exp: NOW / 1000 + 60 }), {}, 'MALFORMED'],
    ['an unknown audience', () => signedRaw({ deviceId: 'dev-a', aud: 'admin', iat: NOW / 1000, exp: NOW / 1000 + 60, nonce: 'n0nce-123' }), {}, 'MALFORMED'],
    ['over 512 characters', () => `fleet_dt_${'A'.repeat(600)}.x`, {}, 'MALFORMED'],
  ])('%s: refused', (_name, make, over, reason) => {
    const r = checkDeviceToken(make(), policy(over));
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.reason).toBe(reason);
  });

  it('tokens carry a fresh nonce each and parse back to what was signed', () => {
    const t1 = parseDeviceToken(tok())!;
    const t2 = parseDeviceToken(tok())!;
    expect(t1.claims).toMatchObject({ deviceId: 'dev-a', aud: 'mqtt', iat: NOW / 1000, exp: NOW / 1000 + 300 });
    expect(t1.claims.nonce).not.toBe(t2.claims.nonce);
    expect(tok().length).toBeLessThan(300);
  });

  it('a public key that is not 32 bytes of base64 is refused with a readable error', () => {
    expect(() => publicKeyObject('abc')).toThrow(/32 bytes/);
    expect(() => publicKeyObject(Buffer.alloc(31).toString('base64'))).toThrow(/32 bytes/);
  });
});

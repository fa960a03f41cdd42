// Issue 13: an artifacts token's signature is checked once per token and key, never skipped on a new token
// or a replaced key, and every claim check still runs on every use (DeviceCredentials over a real SQLite
// file, real Ed25519 keys); the agent presents one artifacts token for the downloads of up to 30 s and a
// fresh MQTT token every time (DeviceIdentity with a controlled clock).
import { afterAll, describe, expect, it } from 'vitest';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { DeviceCredentials } from '../../server/auth/device-credentials.ts';
import { openDatabase } from '../../server/db/database.ts';
import { ARTIFACTS_TOKEN_REUSE_MS, DeviceIdentity } from '../../device-agent/identity.ts';
import { makeDeviceToken, newDeviceKeyPair } from '../../shared/device-token.ts';
import { tempDir } from '../helpers/harness.ts';

const dir = tempDir('verified-tokens-');
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const T0 = Date.parse('2026-11-30T17:00:00Z');

function setUp(name: string) {
  const db = openDatabase(join(dir, `${name}.db`));
  let now = T0;
  const creds = new DeviceCredentials(db, () => new Date(now));
  const kp = newDeviceKeyPair();
  creds.registerKey('dev-1', kp.publicKey, 'admin:test');
  const tok = (aud: 'artifacts' | 'mqtt' = 'artifacts', key = kp) => makeDeviceToken(key.privateKey, { deviceId: 'dev-1', aud, nowMs: now, lifetimeSeconds: 300 });
  return { db, creds, kp, tok, setNow: (ms: number) => { now = ms; } };
}

describe('verified artifacts tokens (server)', () => {
  it('the same token twice: one Ed25519 check, both accepted; a new token is verified, a forged one refused', () => {
    const { db, creds, kp, tok } = setUp('same');
    const t = tok();
    expect(creds.verifyToken(t, 'artifacts').ok).toBe(true);
    expect(creds.verifiedArtifactTokens.hits).toBe(0);
    expect(creds.verifyToken(t, 'artifacts').ok).toBe(true);
    expect(creds.verifiedArtifactTokens.hits).toBe(1);
    expect(creds.verifiedArtifactTokens.size).toBe(1);
    // a new token is new bytes: verified, not looked up
    expect(creds.verifyToken(tok(), 'artifacts').ok).toBe(true);
    expect(creds.verifiedArtifactTokens.hits).toBe(1);
    expect(creds.verifiedArtifactTokens.size).toBe(2);
    // the verified token's claims with another device's signature: refused, and not remembered
    const forged = `${t.split('.')[0]}.${makeDeviceToken(newDeviceKeyPair().privateKey, { deviceId: 'dev-1', aud: 'artifacts', nowMs: T0, lifetimeSeconds: 300 }).split('.')[1]}`;
    expect(creds.verifyToken(forged, 'artifacts')).toMatchObject({ ok: false, reason: 'BAD_SIGNATURE' });
    expect(creds.verifiedArtifactTokens.size).toBe(2);
    expect(kp.publicKey).toBeTruthy();
    db.close();
  });

  it('a verified token after the device\'s key was replaced is refused (BAD_SIGNATURE), after a revocation REVOKED', () => {
    const { db, creds, tok } = setUp('replaced');
    const t = tok();
    expect(creds.verifyToken(t, 'artifacts').ok).toBe(true);
    creds.registerKey('dev-1', newDeviceKeyPair().publicKey, 'admin:test');
    expect(creds.verifyToken(t, 'artifacts')).toMatchObject({ ok: false, reason: 'BAD_SIGNATURE' });
    expect(creds.verifiedArtifactTokens.hits).toBe(0);
    const s = setUp('revoked');
    const t2 = s.tok();
    expect(s.creds.verifyToken(t2, 'artifacts').ok).toBe(true);
    expect(s.creds.revoke('dev-1')).toBe(true);
    expect(s.creds.verifyToken(t2, 'artifacts')).toMatchObject({ ok: false, reason: 'REVOKED' });
    db.close();
    s.db.close();
  });

  it('every claim check still runs on a remembered token: expired, wrong audience, wrong device', () => {
    const { db, creds, tok, setNow } = setUp('claims');
    const t = tok();
    expect(creds.verifyToken(t, 'artifacts').ok).toBe(true);
    // on MQTT the audience is wrong, remembered or not (and MQTT never consults the cache)
    expect(creds.verifyToken(t, 'mqtt', 'dev-1')).toMatchObject({ ok: false, reason: 'WRONG_AUDIENCE' });
    expect(creds.verifyToken(t, 'mqtt', 'dev-2')).toMatchObject({ ok: false, reason: 'WRONG_DEVICE' });
    setNow(T0 + 59_000);
    expect(creds.verifyToken(t, 'artifacts').ok).toBe(true);
    expect(creds.verifiedArtifactTokens.hits).toBe(1);
    // remembered for a minute: later the same token is verified again (and still good until its end)
    setNow(T0 + 299_000);
    expect(creds.verifyToken(t, 'artifacts').ok).toBe(true);
    expect(creds.verifiedArtifactTokens.hits).toBe(1);
    // 300 s life + 60 s skew: refused after it, as without the cache
    setNow(T0 + 361_000);
    expect(creds.verifyToken(t, 'artifacts')).toMatchObject({ ok: false, reason: 'EXPIRED' });
    db.close();
  });

  it('MQTT tokens are never remembered, and a replayed one is still REPLAYED', () => {
    const { db, creds, tok } = setUp('mqtt');
    const t = tok('mqtt');
    expect(creds.verifyToken(t, 'mqtt', 'dev-1').ok).toBe(true);
    expect(creds.verifyToken(t, 'mqtt', 'dev-1')).toMatchObject({ ok: false, reason: 'REPLAYED' });
    expect(creds.verifiedArtifactTokens.size).toBe(0);
    db.close();
  });
});

describe('the agent\'s artifacts token (DeviceIdentity)', () => {
  it('one artifacts token for up to 30 s (a quarter of its life at most), a new one after; MQTT tokens always new; a new clock offset makes a new one', () => {
    let now = T0;
    const kp = newDeviceKeyPair();
    const id = new DeviceIdentity('dev-1', kp, undefined, () => now, 300);
    const first = id.bearer();
    now += ARTIFACTS_TOKEN_REUSE_MS - 1;
    expect(id.bearer()).toBe(first);
    now += 1;
    const second = id.bearer();
    expect(second).not.toBe(first);
    expect(id.credential('mqtt')).not.toBe(id.credential('mqtt'));
    id.clockOffsetMs = 3_600_000;
    expect(id.bearer()).not.toBe(second);
    // a 40 s lifetime: reused for 10 s only
    const short = new DeviceIdentity('dev-2', kp, undefined, () => now, 40);
    const s1 = short.bearer();
    now += 9_999;
    expect(short.bearer()).toBe(s1);
    now += 1;
    expect(short.bearer()).not.toBe(s1);
    // the clock going back never reuses a token issued "later"
    now -= 60_000;
    const back = short.bearer();
    expect(back).not.toBe(s1);
  });
});

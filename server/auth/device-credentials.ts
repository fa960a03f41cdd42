// Device identity. A device holds either an Ed25519 key pair (the server keeps only the public key; the
// device proves itself with short-lived tokens it signs: shared/device-token.ts) or, on the legacy path
// for brokers that cannot check signatures, a bearer secret (the server keeps its SHA-256 only). A
// device gets either by enrolling with a one-time (or n-use) enrollment token an admin made, or an
// admin registers it directly (the operator-approved path). Revocation is immediate: the broker drops
// the device's connection and the next CONNECT or download with its key or secret is refused.
import { EventEmitter } from 'node:events';
import type { KeyObject } from 'node:crypto';
import type { Db } from '../db/database.ts';
import type { Statement } from 'better-sqlite3';
import { AppError } from '../errors.ts';
import { checkDeviceToken, publicKeyObject, VerifiedTokens, type TokenAudience, type TokenCheck, type TokenRefusal } from '../../shared/device-token.ts';
import { digestsEqual, looksLikeSecret, newId, newSecret, secretDigest } from './secrets.ts';

export interface DevicePrincipal { kind: 'device'; deviceId: string; name: string }

interface EnrollmentRow { token_id: string; token_sha256: string; uses_left: number; id_prefix: string | null; created_by: string; created_at: string; expires_at: string; revoked_at: string | null }

export interface DeviceTokenLimits {
  /** the longest lifetime (exp - iat) a device token may claim */
  maxLifetimeSeconds: number;
  /** how far a device's clock may be off the server's either way */
  clockSkewSeconds: number;
}

export interface TokenRefused { deviceId: string | null; aud: TokenAudience; reason: TokenRefusal; message: string }

/** Emits 'refused' (TokenRefused) for every device token refused, on MQTT and HTTP alike. */
export class DeviceCredentials extends EventEmitter {
  /** device id -> its registered public key, parsed once (never one parse or tweetnacl op per CONNECT) */
  private readonly keys = new Map<string, KeyObject | 'revoked' | null>();
  /** MQTT tokens are good once: `${deviceId} ${nonce}` -> expiry (ms), pruned as they expire */
  private readonly seen = new Map<string, number>();
  private nextPrune = 0;
  /** artifacts tokens whose signature verified (an agent's artifact and golden-set requests share one token) */
  readonly verifiedArtifactTokens = new VerifiedTokens();

  constructor(private readonly db: Db, private readonly now: () => Date = () => new Date(),
    private readonly limits: DeviceTokenLimits = { maxLifetimeSeconds: 600, clockSkewSeconds: 60 }) {
    super();
  }

  createEnrollmentToken(opts: { uses: number; ttlSeconds: number; idPrefix?: string; createdBy: string }): { tokenId: string; token: string; uses: number; expiresAt: string; idPrefix: string | null } {
    const token = newSecret('enrollment');
    const now = this.now();
    const expiresAt = new Date(now.getTime() + opts.ttlSeconds * 1000).toISOString();
    const tokenId = newId();
    this.db.prepare(`INSERT INTO enrollment_tokens (token_id, token_sha256, uses_left, id_prefix, created_by, created_at, expires_at)
      VALUES (?, ?, ?, ?, ?, ?, ?)`).run(tokenId, secretDigest(token), opts.uses, opts.idPrefix ?? null, opts.createdBy, now.toISOString(), expiresAt);
    return { tokenId, token, uses: opts.uses, expiresAt, idPrefix: opts.idPrefix ?? null };
  }

  revokeEnrollmentToken(tokenId: string): void {
    const r = this.db.prepare('UPDATE enrollment_tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE token_id = ?').run(this.now().toISOString(), tokenId);
    if (r.changes === 0) throw new AppError('FLEET_ERR_TOKEN_NOT_FOUND', `no enrollment token ${tokenId}`, 404);
  }

  /**
   * Enroll devices with an enrollment token: one use per device, all or nothing. Each device registers
   * its public key (key pairs) or, on the legacy path, gets a bearer secret (`publicKey` absent). A
   * device that already holds an active credential is refused (409): an enrollment token must not let
   * anyone take over an existing identity; an admin revokes first, or registers a new key directly.
   */
  enroll(token: string, devices: { deviceId: string; publicKey?: string }[]): { tokenId: string; devices: { deviceId: string; secret?: string; publicKey?: string }[] } {
    const refused = () => new AppError('FLEET_ERR_ENROLLMENT_REFUSED', 'enrollment token is not valid (unknown, used up, revoked or expired)', 401);
    if (!looksLikeSecret(token, 'enrollment')) throw refused();
    const deviceIds = devices.map((d) => d.deviceId);
    if (new Set(deviceIds).size !== deviceIds.length) throw new AppError('FLEET_ERR_VALIDATION', 'body.devices: device ids must be unique', 400);
    // parse every key before touching the store (a bad one is the caller's 400, not a half-done batch)
    devices.forEach((d, i) => d.publicKey !== undefined && this.parseKey(d.publicKey, `body.devices.${i}.publicKey`));
    const keys = devices.flatMap((d) => (d.publicKey ? [d.publicKey] : []));
    if (new Set(keys).size !== keys.length) throw new AppError('FLEET_ERR_VALIDATION', 'body.devices: two devices give the same public key', 400);
    return this.db.transaction(() => {
      const row = this.db.prepare('SELECT * FROM enrollment_tokens WHERE token_sha256 = ?').get(secretDigest(token)) as EnrollmentRow | undefined;
      if (!row || row.revoked_at || Date.parse(row.expires_at) <= this.now().getTime() || row.uses_left <= 0) throw refused();
      if (row.uses_left < deviceIds.length) throw new AppError('FLEET_ERR_ENROLLMENT_REFUSED', `enrollment token has ${row.uses_left} uses left, ${deviceIds.length} devices asked`, 403);
      if (row.id_prefix) {
        const bad = deviceIds.find((d) => !d.startsWith(row.id_prefix!));
        if (bad) throw new AppError('FLEET_ERR_ENROLLMENT_REFUSED', `this enrollment token is for device ids starting with ${row.id_prefix}, not ${bad}`, 403);
      }
      const active = this.db.prepare('SELECT 1 FROM device_credentials WHERE device_id = ? AND revoked_at IS NULL');
      const taken = deviceIds.filter((d) => active.get(d));
      if (taken.length) throw new AppError('FLEET_ERR_ALREADY_ENROLLED', `already enrolled (revoke first): ${taken.slice(0, 5).join(', ')}${taken.length > 5 ? ` and ${taken.length - 5} more` : ''}`, 409);
      for (const k of keys) this.refuseKnownKey(k);
      this.db.prepare('UPDATE enrollment_tokens SET uses_left = uses_left - ? WHERE token_id = ?').run(deviceIds.length, row.token_id);
      const via = `enrollment:${row.token_id}`;
      const out = devices.map((d) => (d.publicKey
        ? (this.insertKey(d.deviceId, d.publicKey, via), { deviceId: d.deviceId, publicKey: d.publicKey })
        : { deviceId: d.deviceId, secret: this.insert(d.deviceId, via) }));
      return { tokenId: row.token_id, devices: out };
    })();
  }

  /** The operator-approved path with a key pair: register (or replace) a device's public key. */
  registerKey(deviceId: string, publicKey: string, via: string): void {
    this.parseKey(publicKey, 'body.publicKey');
    this.db.transaction(() => {
      this.refuseKnownKey(publicKey);
      this.revokeRows(deviceId);
      this.insertKey(deviceId, publicKey, via);
    })();
  }

  /**
   * A device token (shared/device-token.ts) for this audience: genuine, live, not revoked, and for MQTT
   * naming the connecting client id and never seen before. Refusals are emitted ('refused').
   */
  verifyToken(token: string, aud: TokenAudience, deviceId?: string): TokenCheck {
    const nowMs = this.now().getTime();
    // an MQTT token is good once (below), so only artifacts tokens are remembered as verified
    let r = checkDeviceToken(token, { aud, nowMs, deviceId, ...this.limits, keyFor: (id) => this.keyFor(id), ...(aud === 'artifacts' ? { verified: this.verifiedArtifactTokens } : {}) });
    if (r.ok && aud === 'mqtt') {
      // an MQTT token opens one session: a recorded CONNECT cannot be played again while the token lives
      const id = `${r.claims.deviceId} ${r.claims.nonce}`;
      if (this.seen.has(id)) r = { ok: false, reason: 'REPLAYED', message: `${r.claims.deviceId}: this token was used already` };
      else this.remember(id, (r.claims.exp + this.limits.clockSkewSeconds) * 1000, nowMs);
    }
    if (!r.ok) this.emit('refused', { deviceId: deviceId ?? null, aud, reason: r.reason, message: r.message } satisfies TokenRefused);
    return r;
  }

  /** HTTP bearer: the device an artifacts token proves, or why not. */
  deviceForToken(token: string): { principal: DevicePrincipal } | { reason: TokenRefusal; message: string } {
    const r = this.verifyToken(token, 'artifacts');
    return r.ok ? { principal: { kind: 'device', deviceId: r.claims.deviceId, name: `device:${r.claims.deviceId}` } } : { reason: r.reason, message: r.message };
  }

  /** An admin issues (or rotates) a device's credential directly; any previous one stops working. */
  issue(deviceId: string, via: string): string {
    return this.db.transaction(() => {
      this.revokeRows(deviceId);
      return this.insert(deviceId, via);
    })();
  }

  /** Returns false when the device had no active credential. */
  revoke(deviceId: string): boolean {
    return this.revokeRows(deviceId) > 0;
  }

  /**
   * Has this device id ever held a credential (active or revoked)? Such a device is enrolled: even with
   * allowUnenrolledDevices on, it must present its own current secret (a revocation is not undone by
   * the development switch).
   */
  enrolledEver(deviceId: string): boolean {
    return !!this.db.prepare('SELECT 1 FROM device_credentials WHERE device_id = ? LIMIT 1').get(deviceId);
  }

  /** MQTT CONNECT on the legacy path: does this bearer secret belong to this device? */
  verify(deviceId: string, secret: string | undefined): boolean {
    if (!secret || !looksLikeSecret(secret, 'deviceSecret')) return false;
    // a key-pair device has no secret (secret_sha256 NULL): no secret opens it
    const row = this.db.prepare('SELECT secret_sha256 FROM device_credentials WHERE device_id = ? AND revoked_at IS NULL').get(deviceId) as { secret_sha256: string | null } | undefined;
    return !!row?.secret_sha256 && digestsEqual(row.secret_sha256, secretDigest(secret));
  }

  /** Of these devices, the ones holding an active bearer secret (an external broker's clients are checked against it at start). */
  withActiveSecret(deviceIds: string[]): Set<string> {
    const q = this.db.prepare("SELECT 1 FROM device_credentials WHERE device_id = ? AND revoked_at IS NULL AND kind = 'secret'");
    return new Set(deviceIds.filter((d) => q.get(d)));
  }

  /** HTTP bearer: which device holds this secret (null when none, or revoked). */
  deviceFor(secret: string): DevicePrincipal | null {
    if (!looksLikeSecret(secret, 'deviceSecret')) return null;
    const row = this.db.prepare('SELECT device_id FROM device_credentials WHERE secret_sha256 = ? AND revoked_at IS NULL').get(secretDigest(secret)) as { device_id: string } | undefined;
    return row ? { kind: 'device', deviceId: row.device_id, name: `device:${row.device_id}` } : null;
  }

  /**
   * A device may fetch a blob (artifact, golden vectors) named by a manifest the server assigned to it,
   * now or earlier (a revert or re-assignment may need it again). Decided from the server's own
   * assignment records only: what a device reports it runs never opens anything.
   */
  mayFetch(deviceId: string, blobSha256: string): boolean {
    // prepared once: every artifact request of a rollout asks (issue 13's profile of a 2,000-device rollout)
    this.mayFetchQuery ??= this.db.prepare<[string, string]>('SELECT 1 FROM device_assignments WHERE device_id = ? AND blob_sha256 = ? LIMIT 1');
    return !!this.mayFetchQuery.get(deviceId, blobSha256);
  }
  private mayFetchQuery: Statement<[string, string]> | null = null;

  /**
   * allowUnenrolledDevices only: a download without any credential gets a blob only if the server
   * assigned it to a device that never enrolled (an enrolled device's blobs need its own secret).
   */
  mayFetchAnonymously(blobSha256: string): boolean {
    return !!this.db.prepare(`SELECT 1 FROM device_assignments a WHERE a.blob_sha256 = ?
      AND NOT EXISTS (SELECT 1 FROM device_credentials c WHERE c.device_id = a.device_id) LIMIT 1`).get(blobSha256);
  }

  status(deviceId: string): { enrolled: boolean; kind: 'secret' | 'ed25519' | null; publicKey: string | null; since: string | null; via: string | null } {
    const row = this.db.prepare('SELECT kind, public_key, created_at, enrolled_via FROM device_credentials WHERE device_id = ? AND revoked_at IS NULL').get(deviceId) as { kind: 'secret' | 'ed25519'; public_key: string | null; created_at: string; enrolled_via: string } | undefined;
    return { enrolled: !!row, kind: row?.kind ?? null, publicKey: row?.public_key ?? null, since: row?.created_at ?? null, via: row?.enrolled_via ?? null };
  }

  private keyFor(deviceId: string): KeyObject | 'revoked' | null {
    if (this.keys.has(deviceId)) return this.keys.get(deviceId)!;
    const row = this.db.prepare(`SELECT public_key, revoked_at FROM device_credentials WHERE device_id = ?
      ORDER BY revoked_at IS NULL DESC, created_at DESC LIMIT 1`).get(deviceId) as { public_key: string | null; revoked_at: string | null } | undefined;
    const key = !row ? null : row.revoked_at ? 'revoked' : row.public_key ? publicKeyObject(row.public_key) : null;
    if (this.keys.size >= 200_000) this.keys.clear(); // a bound, not an expected event (one entry per device)
    this.keys.set(deviceId, key);
    return key;
  }

  private parseKey(publicKey: string, field: string): KeyObject {
    try {
      return publicKeyObject(publicKey);
    } catch (err) {
      throw new AppError('FLEET_ERR_VALIDATION', `${field}: ${(err as Error).message}`, 400);
    }
  }

  /** A public key registered before (any device, active or revoked) is never taken again. */
  private refuseKnownKey(publicKey: string): void {
    const owner = this.db.prepare('SELECT device_id FROM device_credentials WHERE public_key = ? LIMIT 1').get(publicKey) as { device_id: string } | undefined;
    if (owner) throw new AppError('FLEET_ERR_KEY_IN_USE', `this public key was registered before (device ${owner.device_id}): make a new key pair`, 409);
  }

  private insertKey(deviceId: string, publicKey: string, via: string): void {
    this.db.prepare("INSERT INTO device_credentials (credential_id, device_id, kind, public_key, enrolled_via, created_at) VALUES (?, ?, 'ed25519', ?, ?, ?)")
      .run(newId(), deviceId, publicKey, via, this.now().toISOString());
    this.keys.delete(deviceId); // parsed again on first use: the cache never holds a row a rollback undid
  }

  private remember(id: string, expiresMs: number, nowMs: number): void {
    if (nowMs >= this.nextPrune) {
      for (const [k, exp] of this.seen) if (exp < nowMs) this.seen.delete(k);
      this.nextPrune = nowMs + 10_000;
    }
    this.seen.set(id, expiresMs);
  }

  private insert(deviceId: string, via: string): string {
    const secret = newSecret('deviceSecret');
    this.db.prepare("INSERT INTO device_credentials (credential_id, device_id, kind, secret_sha256, enrolled_via, created_at) VALUES (?, ?, 'secret', ?, ?, ?)")
      .run(newId(), deviceId, secretDigest(secret), via, this.now().toISOString());
    this.keys.delete(deviceId);
    return secret;
  }

  private revokeRows(deviceId: string): number {
    this.keys.delete(deviceId);
    return this.db.prepare('UPDATE device_credentials SET revoked_at = ? WHERE device_id = ? AND revoked_at IS NULL').run(this.now().toISOString(), deviceId).changes;
  }
}

// Device identity: each device holds a secret of its own (the server keeps its SHA-256 only). A device
// gets it by enrolling with a one-time (or n-use) enrollment token an admin made, or an admin issues
// it directly (the operator-approved path). Revocation is immediate: the broker drops the device's
// connection and the next CONNECT or download with the old secret is refused.
import type { Db } from '../db/database.ts';
import { AppError } from '../errors.ts';
import { digestsEqual, looksLikeSecret, newId, newSecret, secretDigest } from './secrets.ts';

export interface DevicePrincipal { kind: 'device'; deviceId: string; name: string }

interface EnrollmentRow { token_id: string; token_sha256: string; uses_left: number; id_prefix: string | null; created_by: string; created_at: string; expires_at: string; revoked_at: string | null }

export class DeviceCredentials {
  constructor(private readonly db: Db, private readonly now: () => Date = () => new Date()) {}

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
   * Enroll devices with an enrollment token: one use per device, all or nothing. A device that already
   * holds an active credential is refused (409): an enrollment token must not let anyone take over an
   * existing identity; an admin revokes first, or issues a new credential directly.
   */
  enroll(token: string, deviceIds: string[]): { tokenId: string; devices: { deviceId: string; secret: string }[] } {
    const refused = () => new AppError('FLEET_ERR_ENROLLMENT_REFUSED', 'enrollment token is not valid (unknown, used up, revoked or expired)', 401);
    if (!looksLikeSecret(token, 'enrollment')) throw refused();
    if (new Set(deviceIds).size !== deviceIds.length) throw new AppError('FLEET_ERR_VALIDATION', 'body.deviceIds: device ids must be unique', 400);
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
      this.db.prepare('UPDATE enrollment_tokens SET uses_left = uses_left - ? WHERE token_id = ?').run(deviceIds.length, row.token_id);
      const devices = deviceIds.map((deviceId) => ({ deviceId, secret: this.insert(deviceId, `enrollment:${row.token_id}`) }));
      return { tokenId: row.token_id, devices };
    })();
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

  /** MQTT CONNECT: does this secret belong to this device? */
  verify(deviceId: string, secret: string | undefined): boolean {
    if (!secret || !looksLikeSecret(secret, 'deviceSecret')) return false;
    const row = this.db.prepare('SELECT secret_sha256 FROM device_credentials WHERE device_id = ? AND revoked_at IS NULL').get(deviceId) as { secret_sha256: string } | undefined;
    return !!row && digestsEqual(row.secret_sha256, secretDigest(secret));
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
    return !!this.db.prepare('SELECT 1 FROM device_assignments WHERE device_id = ? AND blob_sha256 = ? LIMIT 1').get(deviceId, blobSha256);
  }

  /**
   * allowUnenrolledDevices only: a download without any credential gets a blob only if the server
   * assigned it to a device that never enrolled (an enrolled device's blobs need its own secret).
   */
  mayFetchAnonymously(blobSha256: string): boolean {
    return !!this.db.prepare(`SELECT 1 FROM device_assignments a WHERE a.blob_sha256 = ?
      AND NOT EXISTS (SELECT 1 FROM device_credentials c WHERE c.device_id = a.device_id) LIMIT 1`).get(blobSha256);
  }

  status(deviceId: string): { enrolled: boolean; since: string | null; via: string | null } {
    const row = this.db.prepare('SELECT created_at, enrolled_via FROM device_credentials WHERE device_id = ? AND revoked_at IS NULL').get(deviceId) as { created_at: string; enrolled_via: string } | undefined;
    return { enrolled: !!row, since: row?.created_at ?? null, via: row?.enrolled_via ?? null };
  }

  private insert(deviceId: string, via: string): string {
    const secret = newSecret('deviceSecret');
    this.db.prepare('INSERT INTO device_credentials (credential_id, device_id, secret_sha256, enrolled_via, created_at) VALUES (?, ?, ?, ?, ?)')
      .run(newId(), deviceId, secretDigest(secret), via, this.now().toISOString());
    return secret;
  }

  private revokeRows(deviceId: string): number {
    return this.db.prepare('UPDATE device_credentials SET revoked_at = ? WHERE device_id = ? AND revoked_at IS NULL').run(this.now().toISOString(), deviceId).changes;
  }
}

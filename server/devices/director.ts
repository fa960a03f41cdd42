// The director: signs one desired state per device (device id, growing sequence number, short expiry,
// digest of the manifest) and publishes it retained on the device's desired topic.
import { envelopeDigest, signDocument } from '../../shared/envelope.ts';
import { manifestBlobs, type DesiredMessage, type DesiredState, type Envelope, type Manifest } from '../../shared/messages.ts';
import { topics } from '../../shared/topics.ts';
import type { Db } from '../db/database.ts';
import { AppError } from '../errors.ts';
import type { KeyStore } from '../keys/key-store.ts';
import type { FleetBus } from '../mqtt/broker.ts';

export interface AssignResult { deviceId: string; seq: number }

/** Shadow mode (issue 17): a candidate the devices hold next to the assigned model, run on `sampleRate` of their inputs. */
export interface ShadowAssignment { manifestSha256: string; sampleRate: number }

export class Director {
  constructor(private readonly db: Db, private readonly keys: KeyStore, private readonly bus: FleetBus, private readonly desiredTtlSeconds: number) {}

  bundleEnvelope(manifestSha256: string): { envelope: Envelope; manifest: Manifest } {
    const row = this.db.prepare('SELECT envelope_json FROM bundles WHERE manifest_sha256 = ?').get(manifestSha256) as { envelope_json: string } | undefined;
    if (!row) throw new AppError('FLEET_ERR_BUNDLE_NOT_FOUND', `no bundle with manifest ${manifestSha256}`, 404);
    const envelope = JSON.parse(row.envelope_json) as Envelope;
    return { envelope, manifest: JSON.parse(envelope.signed) as Manifest };
  }

  /**
   * Sign and store a desired state for each device (one transaction), then publish them. `inTransaction`
   * runs inside that transaction with the sequence numbers, so a caller's own record of the assignment
   * (a campaign's device rows, a plain assignment's) is committed with it or not at all: a server that
   * stops in between cannot leave rows that wait for a desired state never signed, nor a desired state
   * nobody follows. What was committed and not yet published goes out at the next start (republishAll).
   */
  async assign(manifestSha256: string, deviceIds: string[], inTransaction?: (assigned: AssignResult[]) => void, shadow?: ShadowAssignment): Promise<AssignResult[]> {
    const { envelope, manifest } = this.bundleEnvelope(manifestSha256);
    const held = shadow ? { ...this.bundleEnvelope(shadow.manifestSha256), sampleRate: shadow.sampleRate } : undefined;
    if (held && shadow!.manifestSha256 === manifestSha256) throw new AppError('FLEET_ERR_SHADOW_IS_ACTIVE', 'the shadow candidate must differ from the assigned model', 400);
    return this.assignEnvelope(envelope, manifest, deviceIds, inTransaction, held);
  }

  /** Lower-level: assign any manifest envelope (tests use it to deliver manifests the server did not sign). */
  async assignEnvelope(
    envelope: Envelope, manifest: Pick<Manifest, 'modelId' | 'version'>, deviceIds: string[], inTransaction?: (assigned: AssignResult[]) => void,
    shadow?: { envelope: Envelope; manifest: Pick<Manifest, 'modelId' | 'version'>; sampleRate: number },
  ): Promise<AssignResult[]> {
    const signer = this.keys.signerFor('director');
    const keyset = this.keys.keysetEnvelope;
    const now = new Date();
    const expires = new Date(now.getTime() + this.desiredTtlSeconds * 1000).toISOString();
    const digest = envelopeDigest(envelope);
    const out: { deviceId: string; seq: number; payload: string }[] = [];
    this.db.transaction(() => {
      const bump = this.db.prepare(`INSERT INTO devices (device_id, first_seen, last_seen, desired_seq) VALUES (?, ?, ?, 1)
        ON CONFLICT(device_id) DO UPDATE SET desired_seq = desired_seq + 1 RETURNING desired_seq`);
      const save = this.db.prepare('UPDATE devices SET desired_manifest_sha256 = ?, desired_json = ?, desired_expires = ? WHERE device_id = ?');
      // the server's own record of what it assigned: artifact access and the device view read it
      const grant = this.db.prepare(`INSERT OR IGNORE INTO device_assignments (device_id, manifest_sha256, blob_sha256, model_id, version, first_seq, assigned_at)
        VALUES (?, ?, ?, ?, ?, ?, ?)`);
      const blobs = blobsOf(envelope);
      // The same text as JSON.stringify({keyset, manifest, director}) (a test holds them equal): the key
      // set and manifest, the bulk of each message, are serialized once per call, not once per device.
      const head = `{"keyset":${JSON.stringify(keyset)},"manifest":${JSON.stringify(envelope)},"director":`;
      // shadow mode: the candidate's manifest travels beside the assigned one (absent: byte-for-byte as before)
      const tail = shadow ? `,"shadowManifest":${JSON.stringify(shadow.envelope)}` : '';
      const desiredPayload = (director: Envelope) => `${head}${JSON.stringify(director)}${tail}}`;
      const shadowDigest = shadow ? envelopeDigest(shadow.envelope) : '';
      const shadowBlobs = shadow ? blobsOf(shadow.envelope) : [];
      for (const deviceId of deviceIds) {
        const { desired_seq: seq } = bump.get(deviceId, now.toISOString(), now.toISOString()) as { desired_seq: number };
        const desired: DesiredState = {
          type: 'desired', deviceId, seq, issuedAt: now.toISOString(), expires,
          modelId: manifest.modelId, version: manifest.version, manifestSha256: digest,
          ...(shadow ? { shadow: { modelId: shadow.manifest.modelId, version: shadow.manifest.version, manifestSha256: shadowDigest, sampleRate: shadow.sampleRate } } : {}),
        };
        const payload = desiredPayload(signDocument(desired, signer));
        save.run(digest, payload, expires, deviceId);
        for (const blob of blobs) grant.run(deviceId, digest, blob, manifest.modelId, manifest.version, seq, now.toISOString());
        // the shadow candidate's blobs are the device's to fetch as well
        for (const blob of shadowBlobs) grant.run(deviceId, shadowDigest, blob, shadow!.manifest.modelId, shadow!.manifest.version, seq, now.toISOString());
        out.push({ deviceId, seq, payload });
      }
      inTransaction?.(out.map(({ deviceId, seq }) => ({ deviceId, seq })));
    })();
    // in parallel, a few hundred at a time: one by one, ten thousand round trips through the broker add up
    for (let i = 0; i < out.length; i += 500) {
      await Promise.all(out.slice(i, i + 500).map((o) => this.bus.publish(topics.desired(o.deviceId), o.payload, { qos: 1, retain: true })));
    }
    return out.map(({ deviceId, seq }) => ({ deviceId, seq }));
  }

  /**
   * After a key change: re-issue every stored desired state that carries an older key set, pointing at
   * the same manifest, with a new sequence number, the current key set and the current director key.
   * Devices learn the new key set this way (they pin only the root); once they accept it, a desired
   * state carrying the older set is refused (KEYSET_ROLLBACK), so a revoked key cannot come back.
   */
  async resignAll(): Promise<{ reissued: number }> {
    const current = this.keys.keyset.version;
    const rows = this.db.prepare('SELECT device_id, desired_json FROM devices WHERE desired_json IS NOT NULL').all() as { device_id: string; desired_json: string }[];
    type Shadow = { envelope: Envelope; manifest: Pick<Manifest, 'modelId' | 'version'>; sampleRate: number };
    const byManifest = new Map<string, { envelope: Envelope; manifest: Pick<Manifest, 'modelId' | 'version'>; deviceIds: string[]; shadow?: Shadow }>();
    for (const r of rows) {
      const msg = JSON.parse(r.desired_json) as DesiredMessage;
      if ((JSON.parse(msg.keyset.signed) as { version: number }).version >= current) continue;
      const desired = JSON.parse(msg.director.signed) as DesiredState;
      // a shadow the desired state named is named again (grouped by assigned manifest, shadow and rate)
      const shadow = desired.shadow && msg.shadowManifest
        ? { envelope: msg.shadowManifest, manifest: { modelId: desired.shadow.modelId, version: desired.shadow.version }, sampleRate: desired.shadow.sampleRate } : undefined;
      const key = shadow ? `${desired.manifestSha256}:${desired.shadow!.manifestSha256}:${shadow.sampleRate}` : desired.manifestSha256;
      const group = byManifest.get(key) ?? { envelope: msg.manifest, manifest: { modelId: desired.modelId, version: desired.version }, deviceIds: [], shadow };
      group.deviceIds.push(r.device_id);
      byManifest.set(key, group);
    }
    let reissued = 0;
    for (const g of byManifest.values()) reissued += (await this.assignEnvelope(g.envelope, g.manifest, g.deviceIds, undefined, g.shadow)).length;
    return { reissued };
  }

  /** The broker keeps retained messages in memory only: put every stored desired state back after a start. */
  async republishAll(): Promise<number> {
    const rows = this.db.prepare('SELECT device_id, desired_json FROM devices WHERE desired_json IS NOT NULL').all() as { device_id: string; desired_json: string }[];
    for (const r of rows) await this.bus.publish(topics.desired(r.device_id), r.desired_json, { qos: 1, retain: true });
    return rows.length;
  }
}

/** The blobs a signed manifest names (what the device will fetch): read from the signed text itself. */
function blobsOf(envelope: Envelope): string[] {
  try {
    const m = JSON.parse(envelope.signed) as Partial<Manifest>;
    if (!m.artifact || !m.healthCheck) return [];
    return manifestBlobs(m as Manifest).filter((s) => typeof s === 'string' && /^[0-9a-f]{64}$/.test(s));
  } catch {
    return [];
  }
}

// The director: signs one desired state per device (device id, growing sequence number, short expiry,
// digest of the manifest) and publishes it retained on the device's desired topic.
import { envelopeDigest, signDocument } from '../../shared/envelope.ts';
import { manifestBlobs, type Chain, type DesiredMessage, type DesiredState, type Envelope, type Manifest } from '../../shared/messages.ts';
import { topics } from '../../shared/topics.ts';
import type { Db } from '../db/database.ts';
import { AppError } from '../errors.ts';
import type { KeyStore } from '../keys/key-store.ts';
import type { DeltaOffer, DeltaStore } from '../bundles/delta-store.ts';
import type { UpdatePolicy } from '../../shared/update-policy.ts';
import type { FleetBus } from '../mqtt/broker.ts';

export interface AssignResult { deviceId: string; seq: number }
/** [#18] a campaign's maintenance windows and conditions, signed into each desired state; [#19] the rest of a multi-model set */
export interface AssignOptions { policy?: UpdatePolicy; set?: AssignSet; shadow?: ShadowAssignment }
/** The same, with the shadow candidate's manifest envelope resolved (assignEnvelope) */
export interface EnvelopeOptions { policy?: UpdatePolicy; set?: AssignSet; shadow?: HeldShadow }
/** A shadow candidate's envelope and the sample rate the devices run it at */
type HeldShadow = { envelope: Envelope; manifest: Pick<Manifest, 'modelId' | 'version'>; sampleRate: number };

/** The other models of a multi-model assignment (issue 19), and the release the set is, if any. */
export interface AssignSet {
  extras: { envelope: Envelope; manifest: Pick<Manifest, 'modelId' | 'version'> }[];
  release?: { name: string; version: number };
  /** the set's pipeline, with its golden vectors (shared/messages.ts Chain) */
  chain?: Chain;
}

/** Shadow mode (issue 17): a candidate the devices hold next to the assigned model, run on `sampleRate` of their inputs. */
export interface ShadowAssignment { manifestSha256: string; sampleRate: number }

export class Director {
  private tagPolicySql: ReturnType<Db['prepare']> | null = null;
  constructor(private readonly db: Db, private readonly keys: KeyStore, private readonly bus: FleetBus, private readonly desiredTtlSeconds: number,
    /** delta bundles: without it (or with deltaMaxFraction 0) no desired state offers one */
    private readonly deltas?: DeltaStore) {}

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
  async assign(manifestSha256: string, deviceIds: string[], inTransaction?: (assigned: AssignResult[]) => void, opts: AssignOptions = {}): Promise<AssignResult[]> {
    const { envelope, manifest } = this.bundleEnvelope(manifestSha256);
    const shadow = opts.shadow;
    const held = shadow ? { ...this.bundleEnvelope(shadow.manifestSha256), sampleRate: shadow.sampleRate } : undefined;
    if (held && shadow!.manifestSha256 === manifestSha256) throw new AppError('FLEET_ERR_SHADOW_IS_ACTIVE', 'the shadow candidate must differ from the assigned model', 400);
    return this.assignEnvelope(envelope, manifest, deviceIds, inTransaction, { ...opts, shadow: held });
  }

  /**
   * A set of models as one signed assignment (issue 19): the first manifest is the primary (what
   * `infer(feeds)` serves and `desired_manifest_sha256` records), the others go in the desired state's
   * `models` and the message's `manifests`. The device installs all or none and switches them together.
   */
  async assignSet(manifestSha256s: string[], deviceIds: string[], release?: AssignSet['release'], inTransaction?: (assigned: AssignResult[]) => void, chain?: Chain): Promise<AssignResult[]> {
    const { primary, set } = this.setOf(manifestSha256s, release, chain);
    return this.assignEnvelope(primary.envelope, primary.manifest, deviceIds, inTransaction, { set });
  }

  /** A set's primary bundle and the rest as AssignOptions.set (a release campaign assigns it with its policy through assign()). */
  setOf(manifestSha256s: string[], release?: AssignSet['release'], chain?: Chain): { primary: { envelope: Envelope; manifest: Manifest }; set: AssignSet } {
    if (manifestSha256s.length === 0) throw new AppError('FLEET_ERR_VALIDATION', 'a set names at least one model', 400);
    const [primary, ...others] = manifestSha256s.map((sha) => this.bundleEnvelope(sha));
    return { primary, set: { extras: others.map((o) => ({ envelope: o.envelope, manifest: o.manifest })), ...(release ? { release } : {}), ...(chain ? { chain } : {}) } };
  }

  /** Lower-level: assign any manifest envelope (tests use it to deliver manifests the server did not sign). */
  async assignEnvelope(envelope: Envelope, manifest: Pick<Manifest, 'modelId' | 'version'>, deviceIds: string[], inTransaction?: (assigned: AssignResult[]) => void, opts: EnvelopeOptions = {}): Promise<AssignResult[]> {
    const { set, shadow } = opts;
    const signer = this.keys.signerFor('director');
    const keyset = this.keys.keysetEnvelope;
    const now = new Date();
    const expires = new Date(now.getTime() + this.desiredTtlSeconds * 1000).toISOString();
    const digest = envelopeDigest(envelope);
    const out: { deviceId: string; seq: number; payload: string }[] = [];
    // Sequence numbers follow the order of the calls: a call waiting for a delta being made (delta-store.ts)
    // holds the ones after it, so a later assignment never gets the lower number.
    await this.inOrder(async () => {
      const offers = await this.deltaOffers(envelope, deviceIds);
      const tagPolicies = !opts.policy && !!this.db.prepare('SELECT 1 FROM tag_policies LIMIT 1').get();
      this.db.transaction(() => {
        const bump = this.db.prepare(`INSERT INTO devices (device_id, first_seen, last_seen, desired_seq) VALUES (?, ?, ?, 1)
          ON CONFLICT(device_id) DO UPDATE SET desired_seq = desired_seq + 1 RETURNING desired_seq`);
        const save = this.db.prepare('UPDATE devices SET desired_manifest_sha256 = ?, desired_json = ?, desired_expires = ? WHERE device_id = ?');
        // the server's own record of what it assigned: artifact access and the device view read it
        const grant = this.db.prepare(`INSERT OR IGNORE INTO device_assignments (device_id, manifest_sha256, blob_sha256, model_id, version, first_seq, assigned_at)
          VALUES (?, ?, ?, ?, ?, ?, ?)`);
        const extras = (set?.extras ?? []).map((e) => ({ ...e, digest: envelopeDigest(e.envelope) }));
        const grants = [{ digest, manifest, blobs: blobsOf(envelope) }, ...extras.map((e) => ({ digest: e.digest, manifest: e.manifest, blobs: blobsOf(e.envelope) }))];
        // The same text as JSON.stringify({keyset, manifest, director[, manifests]}) (a test holds them equal): the key
        // set and manifests, the bulk of each message, are serialized once per call, not once per device.
        const head = `{"keyset":${JSON.stringify(keyset)},"manifest":${JSON.stringify(envelope)},"director":`;
        const tail = (extras.length ? `,"manifests":${JSON.stringify(extras.map((e) => e.envelope))}` : '')
          // shadow mode: the candidate's manifest travels beside the assigned one (absent: byte-for-byte as before)
          + (shadow ? `,"shadowManifest":${JSON.stringify(shadow.envelope)}` : '') + '}';
        const desiredPayload = (director: Envelope) => `${head}${JSON.stringify(director)}${tail}`;
        const setFields = extras.length || set?.release || set?.chain ? {
          ...(extras.length ? { models: extras.map((e) => ({ modelId: e.manifest.modelId, version: e.manifest.version, manifestSha256: e.digest })) } : {}),
          ...(set?.release ? { release: set.release } : {}),
          ...(set?.chain ? { chain: set.chain } : {}),
        } : {};
        const shadowDigest = shadow ? envelopeDigest(shadow.envelope) : '';
        const shadowBlobs = shadow ? blobsOf(shadow.envelope) : [];
        for (const deviceId of deviceIds) {
          const { desired_seq: seq } = bump.get(deviceId, now.toISOString(), now.toISOString()) as { desired_seq: number };
          const desired: DesiredState = {
            type: 'desired', deviceId, seq, issuedAt: now.toISOString(), expires,
            modelId: manifest.modelId, version: manifest.version, manifestSha256: digest, ...setFields,
            ...(shadow ? { shadow: { modelId: shadow.manifest.modelId, version: shadow.manifest.version, manifestSha256: shadowDigest, sampleRate: shadow.sampleRate } } : {}),
          };
          const offer = offers.get(deviceId);
          if (offer) desired.delta = offer;
          const policy = opts.policy ?? (tagPolicies ? this.tagPolicyOf(deviceId) : undefined);
          if (policy) desired.policy = policy;
          const payload = desiredPayload(signDocument(desired, signer));
          save.run(digest, payload, expires, deviceId);
          for (const [i, g] of grants.entries()) for (const blob of i === 0 && offer ? [...g.blobs, offer.sha256] : g.blobs) grant.run(deviceId, g.digest, blob, g.manifest.modelId, g.manifest.version, seq, now.toISOString());
          // the shadow candidate's blobs are the device's to fetch as well
          for (const blob of shadowBlobs) grant.run(deviceId, shadowDigest, blob, shadow!.manifest.modelId, shadow!.manifest.version, seq, now.toISOString());
          out.push({ deviceId, seq, payload });
        }
        inTransaction?.(out.map(({ deviceId, seq }) => ({ deviceId, seq })));
      })();
    });
    // in parallel, a few hundred at a time: one by one, ten thousand round trips through the broker add up
    for (let i = 0; i < out.length; i += 500) {
      await Promise.all(out.slice(i, i + 500).map((o) => this.bus.publish(topics.desired(o.deviceId), o.payload, { qos: 1, retain: true })));
    }
    return out.map(({ deviceId, seq }) => ({ deviceId, seq }));
  }

  private ordered: Promise<unknown> = Promise.resolve();
  /** runs `fn` after every call made before it has run (failures included) */
  private inOrder<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.ordered.then(fn, fn);
    this.ordered = run.catch(() => undefined);
    return run;
  }

  /**
   * [#18] A device group's maintenance windows and conditions: the policy of the device's first tag (in
   * alphabetical order) that has one, for assignments whose campaign carries none.
   */
  private tagPolicyOf(deviceId: string): UpdatePolicy | undefined {
    this.tagPolicySql ??= this.db.prepare(`SELECT p.policy_json FROM devices d, json_each(d.tags_json) t JOIN tag_policies p ON p.tag = t.value
      WHERE d.device_id = ? ORDER BY p.tag LIMIT 1`);
    const r = this.tagPolicySql.get(deviceId) as { policy_json: string } | undefined;
    return r ? JSON.parse(r.policy_json) as UpdatePolicy : undefined;
  }

  /**
   * Per device, the delta to offer with this manifest (delta-store.ts): from the artifact the device
   * runs, as the server's own records know it. Made before the transaction (building one takes CPU time),
   * once per distinct base.
   */
  private async deltaOffers(envelope: Envelope, deviceIds: string[]): Promise<Map<string, DeltaOffer>> {
    const offers = new Map<string, DeltaOffer>();
    if (!this.deltas) return offers;
    const target = blobsOf(envelope)[0];
    if (!target) return offers;
    const baseOf = new Map<string, string>();
    for (const deviceId of deviceIds) {
      const base = this.deltas.activeArtifact(deviceId);
      if (base && base !== target) baseOf.set(deviceId, base);
    }
    const byBase = new Map<string, DeltaOffer | null>();
    for (const base of new Set(baseOf.values())) byBase.set(base, await this.deltas.offer(base, target));
    for (const [deviceId, base] of baseOf) {
      const offer = byBase.get(base);
      if (offer) offers.set(deviceId, offer);
    }
    return offers;
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
    const byManifest = new Map<string, { envelope: Envelope; manifest: Pick<Manifest, 'modelId' | 'version'>; set?: AssignSet; deviceIds: string[]; policy?: UpdatePolicy; shadow?: HeldShadow }>();
    for (const r of rows) {
      const msg = JSON.parse(r.desired_json) as DesiredMessage;
      if ((JSON.parse(msg.keyset.signed) as { version: number }).version >= current) continue;
      const desired = JSON.parse(msg.director.signed) as DesiredState;
      // a multi-model assignment is re-issued as the same set, and a shadow the desired state named is named again
      const shadow = desired.shadow && msg.shadowManifest
        ? { envelope: msg.shadowManifest, manifest: { modelId: desired.shadow.modelId, version: desired.shadow.version }, sampleRate: desired.shadow.sampleRate } : undefined;
      const set: AssignSet | undefined = desired.models && msg.manifests ? {
        extras: desired.models.map((m, i) => ({ envelope: msg.manifests![i], manifest: { modelId: m.modelId, version: m.version } })),
        ...(desired.release ? { release: desired.release } : {}),
        ...(desired.chain ? { chain: desired.chain } : {}),
      } : desired.release || desired.chain ? { extras: [], ...(desired.release ? { release: desired.release } : {}), ...(desired.chain ? { chain: desired.chain } : {}) } : undefined;
      const key = [desired.manifestSha256, ...(desired.models ?? []).map((m) => m.manifestSha256), desired.release ? `${desired.release.name}:${desired.release.version}` : '', desired.chain ? JSON.stringify(desired.chain) : '', JSON.stringify(desired.policy ?? null), desired.shadow ? `${desired.shadow.manifestSha256}:${desired.shadow.sampleRate}` : ''].join('+');
      const group = byManifest.get(key) ?? { envelope: msg.manifest, manifest: { modelId: desired.modelId, version: desired.version }, set, deviceIds: [], policy: desired.policy, shadow };
      group.deviceIds.push(r.device_id);
      byManifest.set(key, group);
    }
    let reissued = 0;
    for (const g of byManifest.values()) reissued += (await this.assignEnvelope(g.envelope, g.manifest, g.deviceIds, undefined, { set: g.set, policy: g.policy, shadow: g.shadow })).length;
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

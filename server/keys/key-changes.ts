// What follows a key-set change, so that devices (which pin only the root) move with it:
// bundles still desired by devices but signed by a just-revoked key are re-signed and the devices
// re-pointed; then every other outstanding desired state is re-issued with the new key set. Each change
// is written to the audit log.
//
// Re-signing decision: the re-signed manifest is a NEW VERSION of the model (latest + 1) with the same
// artifact and content, a fresh issuedAt, signed by the current key (reissueBundle, the same path a
// rollback takes). Not the same version signed again, because a version names exactly one signed
// manifest (UNIQUE(model_id, version); devices and campaigns key on it) and DESIGN.md has the fleet
// never send an old manifest. The old bundle row stays for history; devices holding it move to the new
// one through the director and install the same bytes again (verified and health-checked as always).
// Bundles signed by the revoked key that no device is pointed at are left alone: devices refuse them
// (REVOKED_KEY), so push again or roll back to get a newly signed version.
import type { Fleet } from '../app.ts';
import { writeAudit } from '../audit/audit-log.ts';
import { reissueBundle } from '../bundles/reissue-bundle.ts';
import type { DesiredMessage, DesiredState } from '../../shared/messages.ts';

export interface ResignedBundle { fromManifestSha256: string; manifestSha256: string; modelId: string; fromVersion: number; version: number; keyId: string }
export interface PropagationResult { resignedBundles: ResignedBundle[]; reissued: number }

export async function propagateKeyChange(fleet: Pick<Fleet, 'db' | 'keys' | 'director' | 'config'>, revoked: string[]): Promise<PropagationResult> {
  const { db, keys, director, config } = fleet;
  const resignedBundles: ResignedBundle[] = [];
  let reissued = 0;
  if (revoked.length > 0) {
    // Every manifest a device's desired state names (the primary and, for a multi-model device, the
    // others of its set), re-signed once each if the revoked key signed it.
    const rows = db.prepare('SELECT device_id, desired_json FROM devices WHERE desired_json IS NOT NULL').all() as { device_id: string; desired_json: string }[];
    const renamed = new Map<string, string>();
    const resign = (sha: string): string => {
      const done = renamed.get(sha);
      if (done) return done;
      const row = db.prepare('SELECT envelope_json FROM bundles WHERE manifest_sha256 = ?').get(sha) as { envelope_json: string } | undefined;
      if (!row || !revoked.includes((JSON.parse(row.envelope_json) as { keyId: string }).keyId)) return sha; // not ours to re-sign, or not revoked
      const from = director.bundleEnvelope(sha).manifest;
      const next = reissueBundle({ db, keys, manifestTtlDays: config.manifestTtlDays }, sha, { revertOf: false });
      resignedBundles.push({
        fromManifestSha256: sha, manifestSha256: next.manifestSha256, modelId: from.modelId, fromVersion: from.version,
        version: next.manifest.version, keyId: keys.signerFor('targets').keyId,
      });
      writeAudit(db, { actor: 'server', action: 'bundles.resign', target: next.manifestSha256, detail: { from: sha, revoked } });
      renamed.set(sha, next.manifestSha256);
      return next.manifestSha256;
    };
    const byBundle = new Map<string, string[]>();
    const sets: { deviceId: string; shas: string[]; desired: DesiredState; msg: DesiredMessage }[] = [];
    for (const r of rows) {
      const msg = JSON.parse(r.desired_json) as DesiredMessage;
      const desired = JSON.parse(msg.director.signed) as DesiredState;
      const before = [desired.manifestSha256, ...(desired.models ?? []).map((m) => m.manifestSha256)];
      const after = before.map(resign);
      if (after.every((sha, i) => sha === before[i])) continue;
      if (after.length === 1 && !desired.release && !desired.chain) byBundle.set(after[0], [...(byBundle.get(after[0]) ?? []), r.device_id]);
      else sets.push({ deviceId: r.device_id, shas: after, desired, msg });
    }
    for (const [sha, deviceIds] of byBundle) reissued += (await director.assign(sha, deviceIds)).length;
    // a set stays a set (same release and chain), with the re-signed manifests in place of the revoked
    // ones and the others as they were (envelopes from the stored message: not every one is a bundle)
    for (const s of sets) {
      const envelopes = [s.msg.manifest, ...(s.msg.manifests ?? [])];
      const named = [{ modelId: s.desired.modelId, version: s.desired.version, manifestSha256: s.desired.manifestSha256 }, ...(s.desired.models ?? [])];
      const entries = s.shas.map((sha, i) => (sha !== named[i].manifestSha256
        ? director.bundleEnvelope(sha) : { envelope: envelopes[i], manifest: { modelId: named[i].modelId, version: named[i].version } }));
      const [primary, ...extras] = entries;
      reissued += (await director.assignEnvelope(primary.envelope, primary.manifest, [s.deviceId], undefined, { set: {
        extras: extras.map((e) => ({ envelope: e.envelope, manifest: e.manifest })),
        ...(s.desired.release ? { release: s.desired.release } : {}), ...(s.desired.chain ? { chain: s.desired.chain } : {}),
      }, ...(s.desired.policy ? { policy: s.desired.policy } : {}) })).length;
    }
  }
  reissued += (await director.resignAll()).reissued;
  return { resignedBundles, reissued };
}

/** One audit row per key change: who (the authenticated caller), what, from where. */
export function auditKeyChange(fleet: Pick<Fleet, 'db'>, action: string, target: string | null, detail: unknown, source?: string, actor = 'api'): void {
  writeAudit(fleet.db, { actor, action, target, detail, source });
}

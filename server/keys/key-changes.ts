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

export interface ResignedBundle { fromManifestSha256: string; manifestSha256: string; modelId: string; fromVersion: number; version: number; keyId: string }
export interface PropagationResult { resignedBundles: ResignedBundle[]; reissued: number }

export async function propagateKeyChange(fleet: Pick<Fleet, 'db' | 'keys' | 'director' | 'config'>, revoked: string[]): Promise<PropagationResult> {
  const { db, keys, director, config } = fleet;
  const resignedBundles: ResignedBundle[] = [];
  let reissued = 0;
  if (revoked.length > 0) {
    const rows = db.prepare(`SELECT d.device_id, d.desired_manifest_sha256 AS sha, b.envelope_json FROM devices d
      JOIN bundles b ON b.manifest_sha256 = d.desired_manifest_sha256`).all() as { device_id: string; sha: string; envelope_json: string }[];
    const byBundle = new Map<string, string[]>();
    for (const r of rows) {
      if (!revoked.includes((JSON.parse(r.envelope_json) as { keyId: string }).keyId)) continue;
      byBundle.set(r.sha, [...(byBundle.get(r.sha) ?? []), r.device_id]);
    }
    for (const [sha, deviceIds] of byBundle) {
      const from = director.bundleEnvelope(sha).manifest;
      const next = reissueBundle({ db, keys, manifestTtlDays: config.manifestTtlDays }, sha, { revertOf: false });
      resignedBundles.push({
        fromManifestSha256: sha, manifestSha256: next.manifestSha256, modelId: from.modelId, fromVersion: from.version,
        version: next.manifest.version, keyId: keys.signerFor('targets').keyId,
      });
      writeAudit(db, { actor: 'server', action: 'bundles.resign', target: next.manifestSha256, detail: { from: sha, revoked } });
      reissued += (await director.assign(next.manifestSha256, deviceIds)).length;
    }
  }
  reissued += (await director.resignAll()).reissued;
  return { resignedBundles, reissued };
}

/** One audit row per key change: who (the authenticated caller), what, from where. */
export function auditKeyChange(fleet: Pick<Fleet, 'db'>, action: string, target: string | null, detail: unknown, source?: string, actor = 'api'): void {
  writeAudit(fleet.db, { actor, action, target, detail, source });
}

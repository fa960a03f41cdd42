// A fleet rollback never sends an old manifest (devices would refuse it as a rollback): it publishes a
// new, higher version of the model whose manifest points at the old artifact, signed now.
import { envelopeDigest, signDocument } from '../../shared/envelope.ts';
import type { Envelope, Manifest } from '../../shared/messages.ts';
import type { Db } from '../db/database.ts';
import { AppError } from '../errors.ts';
import type { KeyStore } from '../keys/key-store.ts';

export function reissueBundle(deps: { db: Db; keys: KeyStore; manifestTtlDays: number }, manifestSha256: string, why: { revertOf: boolean }): { manifestSha256: string; manifest: Manifest } {
  const row = deps.db.prepare('SELECT envelope_json, artifact_sha256, report_json FROM bundles WHERE manifest_sha256 = ?').get(manifestSha256) as
    { envelope_json: string; artifact_sha256: string; report_json: string } | undefined;
  if (!row) throw new AppError('FLEET_ERR_BUNDLE_NOT_FOUND', `no bundle with manifest ${manifestSha256}`, 404);
  const old = JSON.parse((JSON.parse(row.envelope_json) as Envelope).signed) as Manifest;
  const signer = deps.keys.signerFor('targets');
  return deps.db.transaction(() => {
    const { latest_version: latest } = deps.db.prepare('SELECT latest_version FROM models WHERE model_id = ?').get(old.modelId) as { latest_version: number };
    const now = new Date();
    const manifest: Manifest = {
      ...old,
      version: latest + 1,
      lineage: { ...old.lineage, parentVersion: latest, ...(why.revertOf ? { revertOf: old.version } : {}) },
      issuedAt: now.toISOString(),
      expires: new Date(now.getTime() + deps.manifestTtlDays * 86400_000).toISOString(),
    };
    const envelope = signDocument(manifest, signer);
    const digest = envelopeDigest(envelope);
    deps.db.prepare('INSERT INTO bundles (manifest_sha256, model_id, version, artifact_sha256, envelope_json, report_json, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)')
      .run(digest, manifest.modelId, manifest.version, row.artifact_sha256, JSON.stringify(envelope), row.report_json, now.toISOString());
    deps.db.prepare('UPDATE models SET latest_version = ? WHERE model_id = ?').run(manifest.version, manifest.modelId);
    return { manifestSha256: digest, manifest };
  })();
}

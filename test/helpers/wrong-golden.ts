// A bundle whose health-check golden outputs do not match its model: what a builder bug, a wrong
// samples file or a model replaced after its vectors were made would ship. Made from a bundle the real
// builder made: its manifest is copied as the model's next version with every golden output moved off
// by `shift` (inline vectors, or a new golden blob stored and registered as the builder stores one), and
// signed with the server's real targets key, so devices accept the manifest and fail the health check.
import { canonicalJson } from '../../shared/canonical-json.ts';
import { envelopeDigest, signDocument } from '../../shared/envelope.ts';
import { GoldenSet, type GoldenVector, type Manifest } from '../../shared/messages.ts';
import { decodeTensor, encodeTensor } from '../../shared/tensor-codec.ts';
import type { TestServer } from './harness.ts';

function shifted(vectors: GoldenVector[], shift: number): GoldenVector[] {
  return vectors.map((v) => ({
    inputs: v.inputs,
    outputs: Object.fromEntries(Object.entries(v.outputs).map(([name, t]) => {
      const d = decodeTensor(t);
      if (d.dtype !== 'float32') throw new Error(`output ${name} is ${d.dtype}: only float32 outputs are shifted`);
      return [name, encodeTensor('float32', d.dims, Float32Array.from(d.data as Float32Array, (x) => x + shift))];
    })),
  }));
}

/** The next version of `manifestSha256`'s model: the same artifact, golden outputs off by `shift`, signed for real. */
export function issueWithWrongGolden(server: TestServer, manifestSha256: string, shift = 0.5): { manifestSha256: string; version: number; manifest: Manifest } {
  const { db, blobs, keys, director } = server.app.fleet;
  const source = structuredClone(director.bundleEnvelope(manifestSha256).manifest);
  const row = db.prepare('SELECT artifact_sha256, report_json FROM bundles WHERE manifest_sha256 = ?').get(manifestSha256) as { artifact_sha256: string; report_json: string };
  return db.transaction(() => {
    const { latest_version: latest } = db.prepare('SELECT latest_version FROM models WHERE model_id = ?').get(source.modelId) as { latest_version: number };
    const hc = source.healthCheck;
    let healthCheck: Manifest['healthCheck'];
    if (hc.golden) {
      const set = GoldenSet.parse(JSON.parse(new TextDecoder().decode(blobs.get(hc.golden.sha256))));
      const blob = blobs.put(new TextEncoder().encode(canonicalJson({ type: 'golden', vectors: shifted(set.vectors, shift) } satisfies GoldenSet)));
      db.prepare('INSERT OR IGNORE INTO artifacts (sha256, length, created_at) VALUES (?, ?, ?)').run(blob.sha256, blob.length, new Date().toISOString());
      healthCheck = { ...hc, golden: { sha256: blob.sha256, length: blob.length, vectors: set.vectors.length } };
    } else {
      healthCheck = { ...hc, vectors: shifted(hc.vectors, shift) };
    }
    const now = new Date();
    const manifest: Manifest = { ...source, version: latest + 1, healthCheck, lineage: { ...source.lineage, parentVersion: latest }, issuedAt: now.toISOString() };
    const envelope = signDocument(manifest, keys.signerFor('targets'));
    const digest = envelopeDigest(envelope);
    db.prepare('INSERT INTO bundles (manifest_sha256, model_id, version, artifact_sha256, envelope_json, report_json, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)')
      .run(digest, manifest.modelId, manifest.version, row.artifact_sha256, JSON.stringify(envelope), row.report_json, now.toISOString());
    db.prepare('UPDATE models SET latest_version = ? WHERE model_id = ?').run(manifest.version, manifest.modelId);
    return { manifestSha256: digest, version: manifest.version, manifest };
  })();
}

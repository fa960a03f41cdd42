import type { FastifyInstance } from 'fastify';
import { auditRequest } from '../audit/audit-log.ts';
import { AppError } from '../errors.ts';
import { buildBundle } from '../bundles/bundle-builder.ts';
import { reissueBundle } from '../bundles/reissue-bundle.ts';
import { bundlesContract as c } from '../../shared/api/bundles.ts';
import { contractRoute } from './contract-route.ts';

interface BundleRow { manifest_sha256: string; model_id: string; version: number; artifact_sha256: string; envelope_json: string; report_json: string; created_at: string }

function bundleView(r: BundleRow, full = false) {
  const envelope = JSON.parse(r.envelope_json);
  const manifest = JSON.parse(envelope.signed);
  return {
    manifestSha256: r.manifest_sha256, modelId: r.model_id, version: r.version, artifactSha256: r.artifact_sha256,
    artifactBytes: manifest.artifact.length, quantization: manifest.quantization.scheme, hardwareTargets: manifest.hardwareTargets,
    keyId: envelope.keyId, createdAt: r.created_at, expires: manifest.expires,
    ...(full ? { envelope, manifest, report: JSON.parse(r.report_json) } : {}),
  };
}

export async function bundleRoutes(app: FastifyInstance): Promise<void> {
  const { db, blobs, keys, config, credentials } = app.fleet;

  contractRoute(app, c.createBundle, async ({ params: { modelId }, body }, req, reply) => {
    const bundle = await buildBundle({ db, blobs, keys, manifestTtlDays: config.manifestTtlDays }, modelId, body);
    app.fleet.deltas.prepareFor(modelId, bundle.manifest.artifact.sha256); // [#18] deltas from the model's recent versions
    auditRequest(req, 'bundles.create', bundle.manifestSha256, { modelId, version: bundle.version, uploadSha256: body.uploadSha256, keyId: keys.signerFor('targets').keyId });
    reply.status(201);
    return { manifestSha256: bundle.manifestSha256, modelId, version: bundle.version, manifest: bundle.manifest, report: bundle.report };
  }, { bodyLimit: config.maxModelBytes });

  // A new version of a bundle (same artifact and content, next version number, signed now by the current
  // targets key): what to do with a bundle whose signing key was revoked (assigning it is refused, 409).
  contractRoute(app, c.resignBundle, async ({ params: { sha256 } }, req, reply) => {
    const from = db.prepare('SELECT model_id, version, envelope_json FROM bundles WHERE manifest_sha256 = ?').get(sha256) as { model_id: string; version: number; envelope_json: string } | undefined;
    if (!from) throw new AppError('FLEET_ERR_BUNDLE_NOT_FOUND', `no bundle with manifest ${sha256}`, 404);
    const next = reissueBundle({ db, keys, manifestTtlDays: config.manifestTtlDays }, sha256, { revertOf: false });
    const keyId = keys.signerFor('targets').keyId;
    auditRequest(req, 'bundles.resign', next.manifestSha256, { from: sha256, fromKeyId: JSON.parse(from.envelope_json).keyId, keyId });
    reply.status(201);
    return { manifestSha256: next.manifestSha256, modelId: from.model_id, version: next.manifest.version, fromManifestSha256: sha256, fromVersion: from.version, keyId };
  });

  contractRoute(app, c.listModels, async () => {
    const rows = db.prepare(`SELECT m.model_id, m.latest_version, m.created_at, COUNT(b.manifest_sha256) AS bundles
      FROM models m LEFT JOIN bundles b ON b.model_id = m.model_id GROUP BY m.model_id ORDER BY m.model_id`).all() as
      { model_id: string; latest_version: number; created_at: string; bundles: number }[];
    // [#19] devices running each model: a single-model device's active model, or every verified model of its set
    const running = new Map((db.prepare(`WITH running AS (
        SELECT device_id, active_model_id AS model_id FROM devices WHERE active_set_json IS NULL AND active_model_id IS NOT NULL
        UNION SELECT d.device_id, json_extract(j.value, '$.modelId') FROM devices d, json_each(d.active_set_json) j
          WHERE d.active_set_json IS NOT NULL AND json_extract(j.value, '$.unverified') IS NULL)
      SELECT model_id, COUNT(DISTINCT device_id) AS n FROM running GROUP BY model_id`).all() as { model_id: string; n: number }[]).map((r) => [r.model_id, r.n]));
    return { models: rows.map((r) => ({ modelId: r.model_id, latestVersion: r.latest_version, bundles: r.bundles, createdAt: r.created_at, devices: running.get(r.model_id) ?? 0 })) };
  });

  contractRoute(app, c.listModelBundles, async ({ params: { modelId } }) => {
    const rows = db.prepare('SELECT * FROM bundles WHERE model_id = ? ORDER BY version DESC').all(modelId) as BundleRow[];
    return { bundles: rows.map((r) => bundleView(r)) };
  });

  contractRoute(app, c.listBundles, async () => {
    const rows = db.prepare('SELECT * FROM bundles ORDER BY created_at DESC, version DESC LIMIT 500').all() as BundleRow[];
    return { bundles: rows.map((r) => bundleView(r)) };
  });

  contractRoute(app, c.getBundle, async ({ params: { sha256 } }) => {
    const row = db.prepare('SELECT * FROM bundles WHERE manifest_sha256 = ?').get(sha256) as BundleRow | undefined;
    if (!row) throw new AppError('FLEET_ERR_BUNDLE_NOT_FOUND', `no bundle with manifest ${sha256}`, 404);
    return bundleView(row, true);
  });

  // Artifacts by SHA-256, with HTTP Range so devices resume broken downloads.
  // a device's own secret, or an operator token; a device gets only blobs of manifests the server assigned to it
  // Content-addressed bytes never change: what is known about a blob (its row, that the file is there, its
  // size) is looked up once, not once per request of a rollout (issue 13: the prepare and two file system
  // calls per request were ~4% of a 2,000-device rollout's server CPU). A blob not found is looked up again.
  const artifactRow = db.prepare<[string]>('SELECT length FROM artifacts WHERE sha256 = ?');
  const artifactSizes = new Map<string, number>();
  const artifactSize = (sha256: string): number | null => {
    const known = artifactSizes.get(sha256);
    if (known !== undefined) return known;
    if (!artifactRow.get(sha256) || !blobs.has(sha256)) return null;
    const size = blobs.size(sha256);
    if (artifactSizes.size >= 10_000) artifactSizes.clear(); // a bound, not an expected event
    artifactSizes.set(sha256, size);
    return size;
  };
  contractRoute(app, c.getArtifact, async ({ params: { sha256 } }, req, reply) => {
      const p = req.principal;
      if (p?.kind === 'device' && !credentials.mayFetch(p.deviceId, sha256)) {
        throw new AppError('FLEET_ERR_FORBIDDEN', `artifact ${sha256} is not assigned to device ${p.deviceId}`, 403);
      }
      // no credential at all (only let through with allowUnenrolledDevices): blobs of unenrolled devices only
      if (!p && !credentials.mayFetchAnonymously(sha256)) {
        throw new AppError('FLEET_ERR_FORBIDDEN', `artifact ${sha256} is not assigned to any unenrolled device: send the device's secret`, 403);
      }
      const size = artifactSize(sha256);
      if (size === null) throw new AppError('FLEET_ERR_ARTIFACT_NOT_FOUND', `no artifact ${sha256}`, 404);
      const range = parseRange(req.headers.range, size);
      if (range === 'invalid') {
        reply.headers({ 'accept-ranges': 'bytes', 'content-type': 'application/octet-stream', etag: `"${sha256}"`, 'content-range': `bytes */${size}` });
        throw new AppError('FLEET_ERR_RANGE', `range ${req.headers.range} is not satisfiable for ${size} bytes`, 416);
      }
      const { start, end } = range ?? { start: 0, end: size - 1 };
      reply.headers({ 'accept-ranges': 'bytes', 'content-type': 'application/octet-stream', etag: `"${sha256}"`, 'content-length': end - start + 1 });
      if (range) reply.status(206).header('content-range', `bytes ${start}-${end}/${size}`);
      if (req.method === 'HEAD') return reply.send();
      // Small artifacts are served from memory: ten thousand devices downloading at once must not
      // cost ten thousand open files next to their ten thousand sockets.
      const cached = blobs.cached(sha256);
      if (cached) return reply.send(range ? cached.subarray(start, end + 1) : cached);
      const { createReadStream } = await import('node:fs');
      return reply.send(createReadStream(blobs.pathOf(sha256), { start, end }));
  }, { head: true });
}

/** One `bytes=a-b`, `bytes=a-` or `bytes=-n` range; multiple ranges are not served. */
export function parseRange(header: string | undefined, size: number): { start: number; end: number } | null | 'invalid' {
  if (!header) return null;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === '' && m[2] === '')) return 'invalid';
  let start: number, end: number;
  if (m[1] === '') {
    const n = Number(m[2]);
    if (n === 0) return 'invalid';
    start = Math.max(0, size - n);
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  }
  if (start > end || start >= size) return 'invalid';
  return { start, end };
}

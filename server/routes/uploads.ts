// Model uploads: raw ONNX bytes (application/octet-stream), checked before anything is stored.
import type { FastifyInstance } from 'fastify';
import { sha256Hex } from '../../shared/crypto.ts';
import { auditRequest } from '../audit/audit-log.ts';
import { AppError } from '../errors.ts';
import { inspectModel, loadCheck, ModelError } from '../onnx/inspect-model.ts';
import { bundlesContract as c } from '../../shared/api/bundles.ts';
import { contractRoute } from './contract-route.ts';

export async function uploadRoutes(app: FastifyInstance): Promise<void> {
  const { db, blobs, config } = app.fleet;

  contractRoute(app, c.upload, async ({ body }, req, reply) => {
    const bytes = new Uint8Array(body);
    let info;
    try {
      info = inspectModel(bytes, { maxBytes: config.maxModelBytes });
      await loadCheck(bytes);
    } catch (err) {
      if (err instanceof ModelError) throw new AppError(`FLEET_ERR_${err.code}`, err.message, err.code === 'MODEL_TOO_LARGE' ? 413 : 422);
      throw err;
    }
    const sha256 = sha256Hex(bytes);
    blobs.put(bytes);
    db.prepare('INSERT OR IGNORE INTO uploads (sha256, length, info_json, created_at) VALUES (?, ?, ?, ?)')
      .run(sha256, bytes.byteLength, JSON.stringify(info), new Date().toISOString());
    auditRequest(req, 'uploads.create', sha256, { length: bytes.byteLength });
    reply.status(201);
    return { sha256, length: bytes.byteLength, info };
  }, { bodyLimit: config.maxModelBytes });

  contractRoute(app, c.getUpload, async ({ params: { sha256 } }) => {
    const row = db.prepare('SELECT sha256, length, info_json, created_at FROM uploads WHERE sha256 = ?').get(sha256) as
      { sha256: string; length: number; info_json: string; created_at: string } | undefined;
    if (!row) throw new AppError('FLEET_ERR_UPLOAD_NOT_FOUND', `no upload ${sha256}`, 404);
    return { sha256: row.sha256, length: row.length, info: JSON.parse(row.info_json), createdAt: row.created_at };
  });
}

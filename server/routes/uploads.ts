// Model uploads: raw ONNX bytes (application/octet-stream), checked before anything is stored.
import type { FastifyInstance } from 'fastify';
import { sha256Hex } from '../../shared/crypto.ts';
import { auditRequest } from '../audit/audit-log.ts';
import { AppError } from '../errors.ts';
import { inspectModel, loadCheck, ModelError } from '../onnx/inspect-model.ts';
import { parseParams, ShaParams } from './params.ts';

export async function uploadRoutes(app: FastifyInstance): Promise<void> {
  const { db, blobs, config } = app.fleet;

  app.post('/v1/uploads', { bodyLimit: config.maxModelBytes }, async (req, reply) => {
    if (!Buffer.isBuffer(req.body)) throw new AppError('FLEET_ERR_CONTENT_TYPE', 'send the model as the raw body with Content-Type: application/octet-stream', 415);
    const bytes = new Uint8Array(req.body);
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
  });

  app.get('/v1/uploads/:sha256', async (req) => {
    const { sha256 } = parseParams(ShaParams, req.params);
    const row = db.prepare('SELECT sha256, length, info_json, created_at FROM uploads WHERE sha256 = ?').get(sha256) as
      { sha256: string; length: number; info_json: string; created_at: string } | undefined;
    if (!row) throw new AppError('FLEET_ERR_UPLOAD_NOT_FOUND', `no upload ${sha256}`, 404);
    return { sha256: row.sha256, length: row.length, info: JSON.parse(row.info_json), createdAt: row.created_at };
  });
}

// GET /v1/fleet/shape (query) and POST /v1/fleet/shape (a campaign's target as JSON): the fleet as the
// server's records describe it, for a rehearsal on a twin (fleetctl campaigns rehearse). Read-only.
import type { FastifyInstance } from 'fastify';
import { fleetShapeContract as c, type FleetShapeRequest } from '../../shared/api/fleet-shape.ts';
import { fleetShape, type ShapeDevice, type ShapeTelemetryRow } from '../fleet/fleet-shape.ts';
import { contractRoute } from './contract-route.ts';

export async function fleetShapeRoutes(app: FastifyInstance): Promise<void> {
  const { db, rollouts } = app.fleet;

  const shape = (req: FleetShapeRequest) => {
    const toMs = Date.now();
    const fromMs = toMs - req.windowSeconds * 1000;
    // the campaign engine's own target resolution, so the shape is of exactly the devices a campaign would take
    const targeted = rollouts.resolveTarget(req.target);
    const online = new Set((db.prepare('SELECT device_id FROM devices WHERE online = 1').all() as { device_id: string }[]).map((r) => r.device_id));
    const devices: ShapeDevice[] = targeted.map((d) => ({
      deviceId: d.device_id, hardware: d.hardware, tags: JSON.parse(d.tags_json) as string[], online: online.has(d.device_id),
      activeManifestSha256: d.active_manifest_sha256, activeModelId: d.active_model_id, activeVersion: d.active_version,
    }));
    const wanted = new Set(devices.map((d) => d.deviceId));
    const rows = (db.prepare(`SELECT device_id, manifest_sha256, count, errors, p50, p95, window_start, window_end FROM telemetry WHERE received_at >= ?`)
      .all(new Date(fromMs).toISOString()) as { device_id: string; manifest_sha256: string | null; count: number; errors: number; p50: number | null; p95: number | null; window_start: string; window_end: string }[]);
    const telemetry: ShapeTelemetryRow[] = rows.filter((r) => wanted.has(r.device_id)).map((r) => ({
      deviceId: r.device_id, manifestSha256: r.manifest_sha256, count: r.count, errors: r.errors, p50: r.p50, p95: r.p95,
      windowMs: Date.parse(r.window_end) - Date.parse(r.window_start),
    }));
    return fleetShape(req.target, devices, telemetry, { fromMs, toMs });
  };

  contractRoute(app, c.query, async ({ query }) => shape(query!));
  // reading, not changing: a viewer may ask, as with the GET
  contractRoute(app, c.post, async ({ body }) => shape(body!));
}

import type { FastifyInstance } from 'fastify';
import { devicesContract as c } from '../../shared/api/devices.ts';
import { auditRequest } from '../audit/audit-log.ts';
import { AppError } from '../errors.ts';
import { assertAssignable } from '../keys/assignable.ts';
import { contractRoute } from './contract-route.ts';
import { deviceShadow } from '../rollouts/shadow-view.ts';
import type { Db } from '../db/database.ts';
import { deviceModelTelemetry } from '../devices/model-telemetry.ts';

interface DeviceRow {
  device_id: string; hardware: string | null; tags_json: string; agent_version: string | null; online: number;
  first_seen: string; last_seen: string; active_model_id: string | null; active_version: number | null;
  active_manifest_sha256: string | null; last_state: string | null; last_reason: string | null; last_detail: string | null;
  last_status_at: string | null; desired_seq: number; desired_manifest_sha256: string | null; claimed_active_json: string | null;
  freshness_stale: number | null; fresh_until: string | null; active_set_json?: string | null; active_release_json?: string | null;
  desired_json?: string | null;
}

/** The devices an assignment names: its `deviceIds`, or with `all` every device (of `hardware`, if given). */
export function assignTargets(db: Db, body: { deviceIds?: string[]; all?: boolean; hardware?: string }): string[] {
  if (!body.all) return body.deviceIds ?? [];
  const rows = (body.hardware
    ? db.prepare('SELECT device_id FROM devices WHERE hardware = ?').all(body.hardware)
    : db.prepare('SELECT device_id FROM devices').all()) as { device_id: string }[];
  return rows.map((r) => r.device_id);
}

export function deviceView(r: DeviceRow) {
  return {
    deviceId: r.device_id, hardware: r.hardware, tags: JSON.parse(r.tags_json), agentVersion: r.agent_version, online: r.online === 1,
    firstSeen: r.first_seen, lastSeen: r.last_seen,
    // active: a model the server assigned to this device and the device reports running; claimedActive:
    // what the device reports running that the server never assigned to it (its word only, not a fact)
    active: r.active_model_id ? { modelId: r.active_model_id, version: r.active_version, manifestSha256: r.active_manifest_sha256 } : null,
    claimedActive: r.claimed_active_json ? { ...JSON.parse(r.claimed_active_json), unverified: true } : null,
    // freeze detection as the device last reported it: stale = no fresh signed freshness statement lately
    freshness: r.freshness_stale === null ? null : { stale: r.freshness_stale === 1, freshUntil: r.fresh_until },
    lastStatus: r.last_state ? { state: r.last_state, reason: r.last_reason, detail: r.last_detail, at: r.last_status_at } : null,
    desired: r.desired_manifest_sha256 ? { manifestSha256: r.desired_manifest_sha256, seq: r.desired_seq } : null,
    // a device running several models: each of them (the primary first), and the release they are
    models: r.active_set_json ? JSON.parse(r.active_set_json) : r.active_model_id ? [{ modelId: r.active_model_id, version: r.active_version, manifestSha256: r.active_manifest_sha256 }] : [],
    release: r.active_release_json ? JSON.parse(r.active_release_json) : null,
  };
}

export async function deviceRoutes(app: FastifyInstance): Promise<void> {
  const { db, director, keys, assignments, rollouts } = app.fleet;

  contractRoute(app, c.listDevices, async ({ query: q }) => {
    const rows = (q.hardware
      ? db.prepare('SELECT * FROM devices WHERE hardware = ? ORDER BY device_id LIMIT ?').all(q.hardware, q.limit)
      : db.prepare('SELECT * FROM devices ORDER BY device_id LIMIT ?').all(q.limit)) as DeviceRow[];
    return { devices: rows.map(deviceView) };
  });

  contractRoute(app, c.getDevice, async ({ params: { deviceId } }) => {
    const row = db.prepare('SELECT * FROM devices WHERE device_id = ?').get(deviceId) as DeviceRow | undefined;
    if (!row) throw new AppError('FLEET_ERR_DEVICE_NOT_FOUND', `no device ${deviceId}`, 404);
    const events = db.prepare('SELECT ts, state, reason, detail, director_seq AS directorSeq, manifest_sha256 AS manifestSha256, seq FROM status_events WHERE device_id = ? ORDER BY id DESC LIMIT 50').all(deviceId);
    // [#19] per-model and chain telemetry of a device running several models
    const modelTelemetry = deviceModelTelemetry(db, deviceId, Date.now());
    return {
      ...deviceView(row), assignment: assignments.view(deviceId, row.desired_seq), campaign: rollouts.store.forDevice(deviceId), events,
      shadow: deviceShadow(db, deviceId, row.desired_json ?? null), // shadow mode (issue 17)
      ...(modelTelemetry.models.length || modelTelemetry.chain ? { modelTelemetry } : {}),
    };
  });

  contractRoute(app, c.assign, async ({ body }, req, reply) => {
    assertAssignable(keys, body.manifestSha256, director.bundleEnvelope(body.manifestSha256));
    const assigned = await assignments.assign(body.manifestSha256, assignTargets(db, body));
    auditRequest(req, 'assignments.create', body.manifestSha256, {
      count: assigned.length, ...(body.all ? { all: true, hardware: body.hardware ?? null } : {}), deviceIds: assigned.slice(0, 100).map((a) => a.deviceId),
    });
    reply.status(202);
    return { manifestSha256: body.manifestSha256, assigned: assigned.length, devices: assigned };
  });
}

// Campaign rows in SQLite: the campaign, its devices with their per-device state, and its event log.
import { randomUUID } from 'node:crypto';
import type { Db } from '../db/database.ts';
import { AppError } from '../errors.ts';
import { CampaignRequest, SEQUENTIAL_OFF, type CampaignRequestInput } from './campaign-config.ts';
import type { CampaignStatus, WaveProgress } from './decide.ts';

export type DeviceState = 'pending' | 'assigned' | 'retry' | 'updated' | 'failed' | 'reverted';

export interface CampaignRow {
  campaign_id: string; name: string | null; manifest_sha256: string; model_id: string; version: number; status: CampaignStatus;
  config_json: string; current_wave: number; wave_started_at: number; halted_at: number | null; created_by: string; created_at: string; updated_at: string;
  /** [#19] a release campaign's release (release-campaign.ts CampaignRelease as JSON), null for one bundle */
  release_json?: string | null;
}

export const ACTIVE_STATUSES: CampaignStatus[] = ['running', 'paused', 'halted', 'reverting'];

export class CampaignStore {
  constructor(readonly db: Db) {}

  insert(c: { name?: string; manifestSha256: string; modelId: string; version: number; config: CampaignRequest; actor: string; now: number;
    devices: { deviceId: string; wave: number }[]; releaseJson?: string }): string {
    const id = randomUUID();
    const iso = new Date(c.now).toISOString();
    this.db.transaction(() => {
      this.db.prepare(`INSERT INTO campaigns (campaign_id, name, manifest_sha256, model_id, version, status, config_json, current_wave, wave_started_at, created_by, created_at, updated_at)
        VALUES (?, ?, ?, ?, ?, 'running', ?, 0, ?, ?, ?, ?)`).run(id, c.name ?? null, c.manifestSha256, c.modelId, c.version, JSON.stringify(c.config), c.now, c.actor, iso, iso);
      if (c.releaseJson) this.db.prepare('UPDATE campaigns SET release_json = ? WHERE campaign_id = ?').run(c.releaseJson, id);
      const ins = this.db.prepare(`INSERT INTO campaign_devices (campaign_id, device_id, ordinal, wave, state) VALUES (?, ?, ?, ?, 'pending')`);
      c.devices.forEach((d, i) => ins.run(id, d.deviceId, i, d.wave));
      this.event(id, 'created', c.actor, { manifestSha256: c.manifestSha256, devices: c.devices.length, config: c.config });
    })();
    return id;
  }

  get(id: string): CampaignRow {
    const row = this.db.prepare('SELECT * FROM campaigns WHERE campaign_id = ?').get(id) as CampaignRow | undefined;
    if (!row) throw new AppError('FLEET_ERR_CAMPAIGN_NOT_FOUND', `no campaign ${id}`, 404);
    return row;
  }

  config(row: CampaignRow): CampaignRequest {
    const raw = JSON.parse(row.config_json) as CampaignRequestInput & { gates?: Record<string, unknown> };
    // a campaign stored before the sequential test existed keeps being judged by the fixed limits alone
    if (raw.gates && raw.gates.sequential === undefined) raw.gates = { ...raw.gates, sequential: SEQUENTIAL_OFF };
    return CampaignRequest.parse(raw);
  }

  list(): CampaignRow[] {
    return this.db.prepare('SELECT * FROM campaigns ORDER BY created_at DESC LIMIT 500').all() as CampaignRow[];
  }

  listByStatus(statuses: CampaignStatus[]): CampaignRow[] {
    return this.db.prepare(`SELECT * FROM campaigns WHERE status IN (${statuses.map(() => '?').join(',')}) ORDER BY created_at`).all(...statuses) as CampaignRow[];
  }

  setStatus(id: string, status: CampaignStatus, now: number, extra: { haltedAt?: number } = {}): void {
    this.db.prepare('UPDATE campaigns SET status = ?, updated_at = ?, halted_at = COALESCE(?, halted_at) WHERE campaign_id = ?')
      .run(status, new Date(now).toISOString(), extra.haltedAt ?? null, id);
  }

  setWave(id: string, wave: number, now: number): void {
    this.db.prepare('UPDATE campaigns SET current_wave = ?, wave_started_at = ?, updated_at = ? WHERE campaign_id = ?').run(wave, now, new Date(now).toISOString(), id);
  }

  event(id: string, type: string, actor: string, detail: unknown): void {
    this.db.prepare('INSERT INTO campaign_events (campaign_id, ts, type, actor, detail_json) VALUES (?, ?, ?, ?, ?)')
      .run(id, new Date().toISOString(), type, actor, detail === undefined ? null : JSON.stringify(detail));
  }

  events(id: string): { id: number; ts: string; type: string; actor: string; detail: unknown }[] {
    return (this.db.prepare('SELECT id, ts, type, actor, detail_json FROM campaign_events WHERE campaign_id = ? ORDER BY id').all(id) as
      { id: number; ts: string; type: string; actor: string; detail_json: string | null }[])
      .map((r) => ({ id: r.id, ts: r.ts, type: r.type, actor: r.actor, detail: r.detail_json ? JSON.parse(r.detail_json) : null }));
  }

  /** Devices already held by an unfinished campaign (a device follows one campaign at a time). */
  busyDevices(deviceIds: string[]): { deviceId: string; campaignId: string }[] {
    const rows = this.db.prepare(`SELECT cd.device_id AS deviceId, cd.campaign_id AS campaignId FROM campaign_devices cd
      JOIN campaigns c ON c.campaign_id = cd.campaign_id WHERE c.status IN (${ACTIVE_STATUSES.map(() => '?').join(',')})`).all(...ACTIVE_STATUSES) as { deviceId: string; campaignId: string }[];
    const wanted = new Set(deviceIds);
    return rows.filter((r) => wanted.has(r.deviceId));
  }

  progress(id: string, wave: number): WaveProgress {
    const rows = this.db.prepare('SELECT state, COUNT(*) AS n, MAX(finished_at) AS last FROM campaign_devices WHERE campaign_id = ? AND wave <= ? GROUP BY state').all(id, wave) as
      { state: DeviceState; n: number; last: number | null }[];
    const by = Object.fromEntries(rows.map((r) => [r.state, r])) as Partial<Record<DeviceState, { n: number; last: number | null }>>;
    const n = (s: DeviceState) => by[s]?.n ?? 0;
    const inFlight = n('assigned') + n('retry');
    const settled = Math.max(...rows.filter((r) => ['updated', 'failed', 'reverted'].includes(r.state)).map((r) => r.last ?? 0), 0);
    return {
      inWaves: rows.reduce((a, r) => a + r.n, 0), pending: n('pending'), inFlight,
      updated: n('updated'), failed: n('failed'), reverted: n('reverted'),
      settledAt: inFlight === 0 && n('pending') === 0 ? settled || null : null,
    };
  }

  /** [#18] assigned devices waiting for their window or conditions, per reason */
  waits(id: string): Record<string, number> {
    const rows = this.db.prepare(`SELECT wait_reason AS r, COUNT(*) AS n FROM campaign_devices WHERE campaign_id = ? AND state = 'assigned' AND wait_reason IS NOT NULL GROUP BY wait_reason`).all(id) as { r: string; n: number }[];
    return Object.fromEntries(rows.map((x) => [x.r, x.n]));
  }

  counts(id: string): Record<string, number> {
    const rows = this.db.prepare('SELECT state, COUNT(*) AS n FROM campaign_devices WHERE campaign_id = ? GROUP BY state').all(id) as { state: string; n: number }[];
    return Object.fromEntries(rows.map((r) => [r.state, r.n]));
  }

  devices(id: string): { deviceId: string; wave: number; state: DeviceState; attempts: number; reason: string | null; revertState: string | null; waitReason: string | null }[] {
    return this.db.prepare('SELECT device_id AS deviceId, wave, state, attempts, reason, revert_state AS revertState, wait_reason AS waitReason FROM campaign_devices WHERE campaign_id = ? ORDER BY ordinal').all(id) as never;
  }

  /** The device's place in its latest campaign, for GET /v1/devices/:id (null if it was never in one). */
  forDevice(deviceId: string): { campaignId: string; campaignStatus: CampaignStatus; wave: number; state: DeviceState; attempts: number; maxRetries: number; assignedSeq: number | null; reason: string | null; revertState: string | null } | null {
    const r = this.db.prepare(`SELECT cd.campaign_id, c.status, c.config_json, cd.wave, cd.state, cd.attempts, cd.assigned_seq, cd.reason, cd.revert_state
      FROM campaign_devices cd JOIN campaigns c ON c.campaign_id = cd.campaign_id WHERE cd.device_id = ? ORDER BY c.created_at DESC, c.rowid DESC LIMIT 1`).get(deviceId) as
      { campaign_id: string; status: CampaignStatus; config_json: string; wave: number; state: DeviceState; attempts: number; assigned_seq: number | null; reason: string | null; revert_state: string | null } | undefined;
    if (!r) return null;
    const maxRetries = (JSON.parse(r.config_json) as { maxRetries?: number }).maxRetries ?? 0;
    return { campaignId: r.campaign_id, campaignStatus: r.status, wave: r.wave + 1, state: r.state, attempts: r.attempts, maxRetries, assignedSeq: r.assigned_seq, reason: r.reason, revertState: r.revert_state };
  }
}

// Telemetry retention: raw windows, minute rollups and hour rollups each kept for their own time
// (server config telemetryRawRetentionHours, telemetryMinuteRetentionDays, telemetryHourRetentionDays,
// telemetryDeviceHourRetentionDays).
// A tick deletes at most `maxRowsPerTick` rows from each table, oldest first, so a server that was off
// for a week catches up over several ticks instead of holding the database for seconds.
//
// Gate figures (server/rollouts/gate-figures.ts) read raw windows of a campaign's new model and of
// the models its devices ran before. Raw windows of those manifests are never pruned while the
// campaign is unfinished (running, paused, halted, reverting), whatever their age: a gate judges the
// same rows whether pruning ran or not.
import type { Db } from '../db/database.ts';
import { ACTIVE_STATUSES } from '../rollouts/campaign-store.ts';

export interface RetentionSettings { rawHours: number; minuteDays: number; hourDays: number; deviceHourDays: number; maxRowsPerTick: number }

export interface PruneResult { raw: number; minute: number; hour: number; deviceHour: number; protectedManifests: number }

export class TelemetryRetention {
  private timer: NodeJS.Timeout | null = null;
  readonly totals: PruneResult = { raw: 0, minute: 0, hour: 0, deviceHour: 0, protectedManifests: 0 };

  constructor(private readonly db: Db, private readonly settings: RetentionSettings, private readonly now: () => number = Date.now) {}

  start(intervalMs: number): void {
    if (this.timer || intervalMs <= 0) return;
    this.timer = setInterval(() => this.tick(), intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** Manifests whose raw windows an unfinished campaign's gate may still read. */
  protectedManifests(): string[] {
    const marks = ACTIVE_STATUSES.map(() => '?').join(',');
    return (this.db.prepare(`SELECT manifest_sha256 AS m FROM campaigns WHERE status IN (${marks})
      UNION SELECT DISTINCT cd.previous_manifest_sha256 FROM campaign_devices cd JOIN campaigns c ON c.campaign_id = cd.campaign_id
        WHERE c.status IN (${marks}) AND cd.previous_manifest_sha256 IS NOT NULL`).pluck().all(...ACTIVE_STATUSES, ...ACTIVE_STATUSES) as string[]);
  }

  tick(): PruneResult {
    const now = this.now();
    const s = this.settings;
    const rawCutoff = new Date(now - s.rawHours * 3600_000).toISOString();
    const minuteCutoff = Math.floor((now - s.minuteDays * 86400_000) / 1000);
    const hourCutoff = Math.floor((now - s.hourDays * 86400_000) / 1000);
    const deviceHourCutoff = Math.floor((now - s.deviceHourDays * 86400_000) / 1000);
    const keep = this.protectedManifests();
    const limit = s.maxRowsPerTick;
    const r = this.db.transaction((): PruneResult => {
      const raw = this.db.prepare(`DELETE FROM telemetry WHERE rowid IN (SELECT rowid FROM telemetry WHERE received_at < ?
        AND (manifest_sha256 IS NULL OR manifest_sha256 NOT IN (SELECT value FROM json_each(?))) ORDER BY received_at LIMIT ?)`)
        .run(rawCutoff, JSON.stringify(keep), limit).changes;
      // [#19] a window's per-model and chain rows go with the window (kept while it is kept), by the same cutoff
      this.db.prepare(`DELETE FROM telemetry_models WHERE (device_id, seq, model_id) IN (SELECT tm.device_id, tm.seq, tm.model_id FROM telemetry_models tm
        WHERE tm.received_at < ? AND NOT EXISTS (SELECT 1 FROM telemetry t WHERE t.device_id = tm.device_id AND t.seq = tm.seq) ORDER BY tm.received_at LIMIT ?)`)
        .run(now - s.rawHours * 3600_000, limit);
      // rollup tables are WITHOUT ROWID: rows are named by their primary key
      const rollup = (table: string, pk: string, cutoff: number) => this.db.prepare(`DELETE FROM ${table} WHERE (${pk}) IN
        (SELECT ${pk} FROM ${table} WHERE bucket_start < ? ORDER BY bucket_start LIMIT ?)`).run(cutoff, limit).changes;
      const fleetPk = 'bucket_start, manifest_sha256, hardware';
      return {
        raw, minute: rollup('telemetry_minute', fleetPk, minuteCutoff), hour: rollup('telemetry_hour', fleetPk, hourCutoff),
        deviceHour: rollup('telemetry_device_hour', 'device_id, bucket_start, manifest_sha256', deviceHourCutoff), protectedManifests: keep.length,
      };
    })();
    this.totals.raw += r.raw; this.totals.minute += r.minute; this.totals.hour += r.hour; this.totals.deviceHour += r.deviceHour;
    this.totals.protectedManifests = r.protectedManifests;
    return r;
  }
}

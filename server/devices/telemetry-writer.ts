// Telemetry windows are written in batches (one transaction per few hundred rows is ~10x faster than a
// commit per row) and idempotently: (device_id, seq) is the key, so a window resent after a reconnect
// is stored once. Each newly stored window is added to the per-minute and per-hour rollups in the same
// transaction (server/telemetry/rollups.ts).
import type { Telemetry } from '../../shared/messages.ts';
import type { Db } from '../db/database.ts';
import { RollupBatch, RollupCache } from '../telemetry/rollups.ts';

export class TelemetryWriter {
  private pending: Telemetry[] = [];
  private timer: NodeJS.Timeout | null = null;
  stored = 0;
  duplicates = 0;
  /** told of each window stored for the first time, with when it was stored (metrics listen here) */
  onStored: ((t: Telemetry, storedAt: number) => void) | null = null;
  /** the rollup rows written last (a device's next window in the hour merges without reading its row back) */
  private readonly rollupCache = new RollupCache();
  /** device id -> hardware class, as the devices table says (read once per device) */
  private readonly hardware = new Map<string, string | null>();

  constructor(private readonly db: Db, private readonly maxBatch = 500, private readonly maxDelayMs = 50, private readonly now: () => number = Date.now) {}

  /** a presence message may name a new hardware class: read it again at the device's next window */
  forgetHardware(deviceId: string): void {
    this.hardware.delete(deviceId);
  }

  private hardwareOf(deviceId: string, query: { get(id: string): unknown }): string | null {
    let hw = this.hardware.get(deviceId);
    if (hw === undefined) {
      hw = (query.get(deviceId) as string | null | undefined) ?? null;
      // a device seen before its first presence has no class yet: asked again next time
      if (hw !== null) {
        if (this.hardware.size > 100_000) this.hardware.clear();
        this.hardware.set(deviceId, hw);
      }
    }
    return hw;
  }

  add(t: Telemetry): void {
    this.pending.push(t);
    if (this.pending.length >= this.maxBatch) this.flush();
    else if (!this.timer) this.timer = setTimeout(() => this.flush(), this.maxDelayMs);
  }

  flush(): void {
    if (this.timer) { clearTimeout(this.timer); this.timer = null; }
    if (this.pending.length === 0) return;
    const batch = this.pending;
    this.pending = [];
    const insert = this.db.prepare(`INSERT OR IGNORE INTO telemetry (device_id, seq, window_start, window_end, model_id, version,
      manifest_sha256, count, errors, p50, p95, p99, max_ms, rss_bytes, histograms_json, received_at)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`);
    const hardwareOf = this.db.prepare('SELECT hardware FROM devices WHERE device_id = ?').pluck();
    // shadow mode (issue 17): the candidate's figures of the window, beside it
    const insertShadow = this.db.prepare(`INSERT OR IGNORE INTO shadow_windows (device_id, seq, manifest_sha256, active_manifest_sha256, samples, errors, dropped,
      active_ms, candidate_ms, outputs_json, histograms_json, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`);
    const rollups = new RollupBatch();
    const nowMs = this.now();
    const now = new Date(nowMs).toISOString();
    const stored: Telemetry[] = [];
    let learned: { commit(): void } | null = null;
    this.db.transaction(() => {
      for (const t of batch) {
        const hist = t.inputHistograms || t.outputHistograms ? JSON.stringify({ inputs: t.inputHistograms, outputs: t.outputHistograms }) : null;
        const r = insert.run(t.deviceId, t.seq, t.windowStart, t.windowEnd, t.active?.modelId ?? null, t.active?.version ?? null,
          t.active?.manifestSha256 ?? null, t.count, t.errors, t.latencyMs.p50, t.latencyMs.p95, t.latencyMs.p99, t.latencyMs.max, t.rssBytes, hist, now);
        if (r.changes) {
          this.stored++;
          stored.push(t);
          rollups.add(t, this.hardwareOf(t.deviceId, hardwareOf));
          const sh = t.shadow;
          if (sh) insertShadow.run(t.deviceId, t.seq, sh.manifestSha256, t.active?.manifestSha256 ?? null, sh.samples, sh.errors, sh.dropped, sh.activeMs, sh.candidateMs, JSON.stringify(sh.outputs),
            sh.outputHistograms ? JSON.stringify(sh.outputHistograms) : null, nowMs);
        } else this.duplicates++;
      }
      learned = rollups.write(this.db, this.rollupCache);
    })();
    learned!.commit();
    if (this.onStored) for (const t of stored) this.onStored(t, nowMs);
  }
}

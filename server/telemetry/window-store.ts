// Stores batches of telemetry windows in SQLite, one transaction per batch, idempotently: (device_id, seq)
// is the raw table's key, so a window resent after a reconnect (or a batch sent again after the writer
// thread restarted) is stored once. Each newly stored window is added to the per-minute and per-hour
// rollups in the same transaction (rollups.ts), so a resent window is never counted twice there either.
// Synchronous and thread-agnostic: the telemetry writer thread (writer-thread.ts) runs it on its own
// connection; an in-memory database runs it on the main thread (server/devices/telemetry-writer.ts).
import type { Statement } from 'better-sqlite3';
import type { Telemetry } from '../../shared/messages.ts';
import type { Db } from '../db/database.ts';
import { RollupBatch, RollupCache } from './rollups.ts';

/** [#19] telemetry_models' model_id for a window's chain figures (never a model id: ids start with a letter or digit) */
export const CHAIN_ROW = '@chain';

/** What happened to each window of a batch, by its index: stored now, already there, or not storable. */
export type WindowOutcome = 'stored' | 'duplicate' | 'failed';

export class WindowStore {
  /** the rollup rows written last (a device's next window in the hour merges without reading its row back) */
  private readonly rollupCache = new RollupCache();
  /** device id -> hardware class, as the devices table says (read once per device) */
  private readonly hardware = new Map<string, string | null>();
  private readonly insert: Statement;
  private readonly hardwareQuery: Statement;
  private readonly insertShadow: Statement;
  private readonly insertModel: Statement;

  constructor(private readonly db: Db) {
    this.insert = db.prepare(`INSERT OR IGNORE INTO telemetry (device_id, seq, window_start, window_end, model_id, version,
      manifest_sha256, count, errors, p50, p95, p99, max_ms, rss_bytes, histograms_json, received_at)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`);
    this.hardwareQuery = db.prepare('SELECT hardware FROM devices WHERE device_id = ?').pluck();
    // shadow mode (issue 17): the candidate's figures of the window, beside it
    this.insertShadow = db.prepare(`INSERT OR IGNORE INTO shadow_windows (device_id, seq, manifest_sha256, active_manifest_sha256, samples, errors, dropped,
      active_ms, candidate_ms, outputs_json, histograms_json, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`);
    // [#19] a multi-model window's per-model and chain figures (model_id '@chain'), beside it
    this.insertModel = db.prepare(`INSERT OR IGNORE INTO telemetry_models (device_id, seq, model_id, manifest_sha256, count, errors, p50, p95, p99, max_ms, received_at, histograms_json)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`);
  }

  /** a presence message may name a new hardware class: read it again at the device's next window */
  forgetHardware(deviceId: string): void {
    this.hardware.delete(deviceId);
  }

  private hardwareOf(deviceId: string): string | null {
    let hw = this.hardware.get(deviceId);
    if (hw === undefined) {
      hw = (this.hardwareQuery.get(deviceId) as string | null | undefined) ?? null;
      // a device seen before its first presence has no class yet: asked again next time
      if (hw !== null) {
        if (this.hardware.size > 100_000) this.hardware.clear();
        this.hardware.set(deviceId, hw);
      }
    }
    return hw;
  }

  /**
   * One transaction for the whole batch. If it fails (a row SQLite refuses), each window is tried in a
   * transaction of its own, so one bad window does not lose the others; those that still fail are 'failed'.
   */
  store(batch: readonly Telemetry[], nowMs: number): WindowOutcome[] {
    try {
      return this.transaction(batch, nowMs);
    } catch {
      return batch.map((t) => {
        try { return this.transaction([t], nowMs)[0]; } catch { return 'failed'; }
      });
    }
  }

  private transaction(batch: readonly Telemetry[], nowMs: number): WindowOutcome[] {
    const now = new Date(nowMs).toISOString();
    const rollups = new RollupBatch();
    let learned: { commit(): void } | null = null;
    const out = this.db.transaction(() => {
      const outcomes = batch.map((t): WindowOutcome => {
        const hist = t.inputHistograms || t.outputHistograms ? JSON.stringify({ inputs: t.inputHistograms, outputs: t.outputHistograms }) : null;
        const r = this.insert.run(t.deviceId, t.seq, t.windowStart, t.windowEnd, t.active?.modelId ?? null, t.active?.version ?? null,
          t.active?.manifestSha256 ?? null, t.count, t.errors, t.latencyMs.p50, t.latencyMs.p95, t.latencyMs.p99, t.latencyMs.max, t.rssBytes, hist, now);
        if (!r.changes) return 'duplicate';
        rollups.add(t, this.hardwareOf(t.deviceId));
        const sh = t.shadow;
        if (sh) this.insertShadow.run(t.deviceId, t.seq, sh.manifestSha256, t.active?.manifestSha256 ?? null, sh.samples, sh.errors, sh.dropped, sh.activeMs, sh.candidateMs,
          JSON.stringify(sh.outputs), sh.outputHistograms ? JSON.stringify(sh.outputHistograms) : null, nowMs);
        if (t.models) {
          for (const [id, m] of Object.entries(t.models)) {
            const mh = m.inputHistograms || m.outputHistograms ? JSON.stringify({ inputs: m.inputHistograms, outputs: m.outputHistograms }) : null;
            this.insertModel.run(t.deviceId, t.seq, id, m.manifestSha256, m.count, m.errors, m.latencyMs.p50, m.latencyMs.p95, m.latencyMs.p99, m.latencyMs.max, nowMs, mh);
          }
        }
        if (t.chain) this.insertModel.run(t.deviceId, t.seq, CHAIN_ROW, null, t.chain.count, t.chain.errors, t.chain.latencyMs.p50, t.chain.latencyMs.p95, t.chain.latencyMs.p99, t.chain.latencyMs.max, nowMs, null);
        return 'stored';
      });
      learned = rollups.write(this.db, this.rollupCache);
      return outcomes;
    })();
    (learned as { commit(): void } | null)?.commit();
    return out;
  }
}

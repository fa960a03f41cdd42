// [#19] A device's per-model and chain telemetry over a recent span, for the device view: each model's
// calls and errors summed over its windows, its latency as the median of the windows' percentiles (as the
// campaign gates read them) and the largest single call. Rows come from telemetry_models (migration 11),
// written beside each window of a device running several models.
import type { Db } from '../db/database.ts';
import { CHAIN_ROW } from '../telemetry/window-store.ts';

export interface ModelTelemetryFigures { windows: number; count: number; errors: number; p50: number | null; p95: number | null; p99: number | null; maxMs: number | null }
export interface ModelTelemetryView {
  windowSeconds: number;
  /** by model and the manifest it ran (a model updated within the span has a row per manifest), newest first */
  models: ({ modelId: string; manifestSha256: string } & ModelTelemetryFigures)[];
  /** inferChain calls end to end, null when none were made */
  chain: ModelTelemetryFigures | null;
}

export function median(xs: number[]): number | null {
  if (xs.length === 0) return null;
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export function deviceModelTelemetry(db: Db, deviceId: string, nowMs: number, windowSeconds = 3600): ModelTelemetryView {
  const rows = db.prepare(`SELECT model_id, manifest_sha256, count, errors, p50, p95, p99, max_ms, received_at FROM telemetry_models
    WHERE device_id = ? AND received_at >= ? ORDER BY seq DESC`).all(deviceId, nowMs - windowSeconds * 1000) as
    { model_id: string; manifest_sha256: string | null; count: number; errors: number; p50: number; p95: number; p99: number; max_ms: number }[];
  const groups = new Map<string, typeof rows>();
  for (const r of rows) {
    const key = `${r.model_id}\u0000${r.manifest_sha256 ?? ''}`;
    groups.set(key, [...(groups.get(key) ?? []), r]);
  }
  const figures = (g: typeof rows): ModelTelemetryFigures => {
    // latency percentiles of windows with at least one answered call (an all-error window has none)
    const timed = g.filter((r) => r.count > r.errors);
    return {
      windows: g.length, count: g.reduce((a, r) => a + r.count, 0), errors: g.reduce((a, r) => a + r.errors, 0),
      p50: median(timed.map((r) => r.p50)), p95: median(timed.map((r) => r.p95)), p99: median(timed.map((r) => r.p99)),
      maxMs: timed.length ? Math.max(...timed.map((r) => r.max_ms)) : null,
    };
  };
  const models: ModelTelemetryView['models'] = [];
  let chain: ModelTelemetryFigures | null = null;
  for (const g of groups.values()) {
    if (g[0].model_id === CHAIN_ROW) chain = figures(g);
    else models.push({ modelId: g[0].model_id, manifestSha256: g[0].manifest_sha256!, ...figures(g) });
  }
  return { windowSeconds, models, chain };
}

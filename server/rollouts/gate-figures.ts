// The telemetry figures a gate is judged on, read from SQLite: devices reporting on the new model,
// inferences and errors, latency of the new model against the previous model on the same devices, and
// drift (PSI) of the summed histograms against the bundle's baseline.
import type { Histogram, Manifest } from '../../shared/messages.ts';
import type { Db } from '../db/database.ts';
import type { GateFigures, ModelGateFigures } from './decide.ts';
import type { CampaignRelease } from './release-campaign.ts';
import { CANDIDATE_WINDOWS_SKIPPED, type DeviceEvidence } from './sequential.ts';
import { psi } from './psi.ts';

function median(xs: number[]): number {
  if (xs.length === 0) return 0;
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export function gateFigures(db: Db, campaignId: string, wave: number, manifest: Manifest, manifestSha256: string, minDriftSamples = 0): GateFigures {
  const newRows = db.prepare(`SELECT t.device_id, t.count, t.errors, t.p95, t.p99, t.histograms_json FROM telemetry t
    JOIN campaign_devices cd ON cd.device_id = t.device_id AND cd.campaign_id = ?
    WHERE cd.wave <= ? AND cd.state IN ('updated', 'reverted') AND t.manifest_sha256 = ?`).all(campaignId, wave, manifestSha256) as
    { device_id: string; count: number; errors: number; p95: number; p99: number; histograms_json: string | null }[];
  const reporting = new Set(newRows.map((r) => r.device_id)).size;
  const inferences = newRows.reduce((a, r) => a + r.count, 0);
  const errors = newRows.reduce((a, r) => a + r.errors, 0);

  const oldRows = db.prepare(`SELECT t.p95, t.p99 FROM telemetry t
    JOIN campaign_devices cd ON cd.device_id = t.device_id AND cd.campaign_id = ?
    WHERE cd.wave <= ? AND cd.state IN ('updated', 'reverted') AND t.manifest_sha256 = cd.previous_manifest_sha256 AND t.count > t.errors`).all(campaignId, wave) as { p95: number; p99: number }[];
  const newLatency = newRows.filter((r) => r.count > r.errors);
  const latency = oldRows.length > 0 && newLatency.length > 0
    ? { newP95: median(newLatency.map((r) => r.p95)), oldP95: median(oldRows.map((r) => r.p95)), newP99: median(newLatency.map((r) => r.p99)), oldP99: median(oldRows.map((r) => r.p99)) }
    : null;

  const drift = driftFigures(newRows.map((r) => r.histograms_json), manifest.driftBaseline, minDriftSamples);
  return { reporting, inferences, errors, latency, drift };
}

/**
 * PSI of the summed histograms of windows (their histograms_json: {inputs, outputs}) against a drift
 * baseline, per input and output with at least `minDriftSamples` observations.
 */
export function driftFigures(histogramsJson: (string | null)[], baseline: Manifest['driftBaseline'], minDriftSamples: number): GateFigures['drift'] {
  const drift: GateFigures['drift'] = [];
  if (!baseline) return drift;
  const sums = new Map<string, number[]>();
  for (const json of histogramsJson) {
    if (!json) continue;
    const h = JSON.parse(json) as { inputs?: Record<string, Histogram>; outputs?: Record<string, Histogram> };
    for (const [side, set] of [['input', h.inputs], ['output', h.outputs]] as const) {
      for (const [name, hist] of Object.entries(set ?? {})) {
        const key = `${side}:${name}`;
        const acc = sums.get(key) ?? new Array(hist.counts.length).fill(0);
        if (acc.length !== hist.counts.length) continue;
        hist.counts.forEach((c, i) => { acc[i] += c; });
        sums.set(key, acc);
      }
    }
  }
  for (const [side, set] of [['input', baseline.inputs], ['output', baseline.outputs]] as const) {
    for (const [name, base] of Object.entries(set)) {
      const observed = sums.get(`${side}:${name}`);
      if (!observed || observed.length !== base.counts.length) continue;
      if (observed.reduce((a, b) => a + b, 0) < minDriftSamples) continue;
      drift.push({ name: `${side}:${name}`, psi: psi(base.counts, observed) });
    }
  }
  return drift;
}

/**
 * Each paired device's telemetry windows for the sequential test: its first 1 + `windows` windows with
 * inferences on the candidate and its last `windows` on its previous model, for devices of waves up to
 * `wave` that reached the candidate and have a previous model. Ordered by when the device's K-th
 * candidate window arrived, so the observations form one growing sequence.
 */
export function deviceEvidence(db: Db, campaignId: string, wave: number, manifestSha256: string, windows: number): DeviceEvidence[] {
  const rows = db.prepare(`SELECT device_id, wave, cand, count, errors, p95, received_at FROM (
      SELECT cd.device_id, cd.wave, (t.manifest_sha256 = ?) AS cand, t.count, t.errors, t.p95, t.received_at, t.seq,
        ROW_NUMBER() OVER (PARTITION BY cd.device_id, t.manifest_sha256 ORDER BY CASE WHEN t.manifest_sha256 = ? THEN t.seq ELSE -t.seq END) AS rn
      FROM campaign_devices cd JOIN telemetry t ON t.device_id = cd.device_id
      WHERE cd.campaign_id = ? AND cd.wave <= ? AND cd.state IN ('updated', 'reverted') AND cd.previous_manifest_sha256 IS NOT NULL
        AND (t.manifest_sha256 = ? OR t.manifest_sha256 = cd.previous_manifest_sha256) AND t.count > 0)
    WHERE rn <= ? + (CASE WHEN cand THEN ? ELSE 0 END) ORDER BY device_id, seq`).all(manifestSha256, manifestSha256, campaignId, wave, manifestSha256, windows, CANDIDATE_WINDOWS_SKIPPED) as
    { device_id: string; wave: number; cand: number; count: number; errors: number; p95: number | null; received_at: string }[];
  return toEvidence(rows, windows);
}

/**
 * [#19] A release campaign's figures per model, from per-model telemetry (telemetry_models): each model's
 * calls and errors on the release's manifest of it, on devices of waves up to `wave` that reached the
 * release, and its p95/p99 (medians over windows) against the same model's manifest in the set each
 * device ran before (previous_set_json), on the same devices; and the drift (PSI) of its own windows'
 * histograms against its manifest's drift baseline.
 */
export function modelGateFigures(db: Db, campaignId: string, wave: number, release: CampaignRelease, baselineOf: (manifestSha256: string) => Manifest['driftBaseline'] = () => undefined, minDriftSamples = 0): ModelGateFigures[] {
  const newQ = db.prepare(`SELECT tm.count, tm.errors, tm.p95, tm.p99, tm.histograms_json FROM telemetry_models tm
    JOIN campaign_devices cd ON cd.device_id = tm.device_id AND cd.campaign_id = ?
    WHERE cd.wave <= ? AND cd.state IN ('updated', 'reverted') AND tm.model_id = ? AND tm.manifest_sha256 = ?`);
  const oldQ = db.prepare(`SELECT tm.p95, tm.p99 FROM telemetry_models tm
    JOIN campaign_devices cd ON cd.device_id = tm.device_id AND cd.campaign_id = ?
    WHERE cd.wave <= ? AND cd.state IN ('updated', 'reverted') AND tm.model_id = ? AND tm.manifest_sha256 != ? AND tm.count > tm.errors
      AND tm.manifest_sha256 IN (SELECT value FROM json_each(cd.previous_set_json, '$.models'))`);
  return release.models.map((m) => {
    const rows = newQ.all(campaignId, wave, m.modelId, m.manifestSha256) as { count: number; errors: number; p95: number; p99: number; histograms_json: string | null }[];
    const old = oldQ.all(campaignId, wave, m.modelId, m.manifestSha256) as { p95: number; p99: number }[];
    const timed = rows.filter((r) => r.count > r.errors);
    const latency = old.length > 0 && timed.length > 0
      ? { newP95: median(timed.map((r) => r.p95)), oldP95: median(old.map((r) => r.p95)), newP99: median(timed.map((r) => r.p99)), oldP99: median(old.map((r) => r.p99)) }
      : null;
    // its drift: its windows' histograms (per-model telemetry) against its own manifest's baseline
    const drift = driftFigures(rows.map((r) => r.histograms_json), baselineOf(m.manifestSha256), minDriftSamples);
    return { modelId: m.modelId, inferences: rows.reduce((a, r) => a + r.count, 0), errors: rows.reduce((a, r) => a + r.errors, 0), latency, drift };
  });
}

/**
 * [#19] The sequential test's evidence for each model of a release, from per-model telemetry
 * (telemetry_models), as deviceEvidence reads it for the primary: per device, its first 1 + `windows`
 * windows with calls on the release's manifest of the model and its last `windows` on the same model's
 * manifest in the set it ran before (previous_set_json). Models the release keeps unchanged (their
 * manifest was already in the device's previous set) are not judged: there is nothing to compare.
 */
export function modelEvidence(db: Db, campaignId: string, wave: number, release: CampaignRelease, windows: number): { modelId: string; evidence: DeviceEvidence[] }[] {
  const q = db.prepare(`SELECT device_id, wave, cand, count, errors, p95, received_at FROM (
      SELECT cd.device_id, cd.wave, (tm.manifest_sha256 = ?) AS cand, tm.count, tm.errors, tm.p95, tm.received_at, tm.seq,
        ROW_NUMBER() OVER (PARTITION BY cd.device_id, tm.manifest_sha256 ORDER BY CASE WHEN tm.manifest_sha256 = ? THEN tm.seq ELSE -tm.seq END) AS rn
      FROM campaign_devices cd JOIN telemetry_models tm ON tm.device_id = cd.device_id AND tm.model_id = ?
      WHERE cd.campaign_id = ? AND cd.wave <= ? AND cd.state IN ('updated', 'reverted') AND cd.previous_set_json IS NOT NULL
        AND ? NOT IN (SELECT value FROM json_each(cd.previous_set_json, '$.models'))
        AND (tm.manifest_sha256 = ? OR tm.manifest_sha256 IN (SELECT value FROM json_each(cd.previous_set_json, '$.models'))) AND tm.count > 0)
    WHERE rn <= ? + (CASE WHEN cand THEN ? ELSE 0 END) ORDER BY device_id, seq`);
  return release.models.map((m) => {
    const rows = q.all(m.manifestSha256, m.manifestSha256, m.modelId, campaignId, wave, m.manifestSha256, m.manifestSha256, windows, CANDIDATE_WINDOWS_SKIPPED) as
      { device_id: string; wave: number; cand: number; count: number; errors: number; p95: number | null; received_at: number }[];
    return { modelId: m.modelId, evidence: toEvidence(rows, windows) };
  });
}

/** Rows of (device, candidate or previous window) in seq order to evidence, ordered by when each device's K-th candidate window arrived. */
function toEvidence(rows: { device_id: string; wave: number; cand: number; count: number; errors: number; p95: number | null; received_at: number | string }[], windows: number): DeviceEvidence[] {
  const byDevice = new Map<string, DeviceEvidence & { completeAt: string }>();
  for (const r of rows) {
    let e = byDevice.get(r.device_id);
    if (!e) byDevice.set(r.device_id, e = { deviceId: r.device_id, wave: r.wave, previous: [], candidate: [], completeAt: '~' });
    const w = { count: r.count, errors: r.errors, p95: r.p95 ?? NaN };
    if (r.cand) {
      e.candidate.push(w);
      // epoch ms (telemetry_models) padded so that it sorts as text, like telemetry's ISO times
      if (e.candidate.length === windows + CANDIDATE_WINDOWS_SKIPPED) e.completeAt = typeof r.received_at === 'number' ? String(r.received_at).padStart(16, '0') : r.received_at;
    } else e.previous.push(w);
  }
  return [...byDevice.values()].sort((a, b) => a.completeAt.localeCompare(b.completeAt) || a.deviceId.localeCompare(b.deviceId))
    .map(({ completeAt: _c, ...e }) => e);
}

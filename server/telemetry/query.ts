// Telemetry queries, answered from the rollups only: minute or hour rows per model version and
// hardware class, or hour rows per device when a device is asked for. Rows are merged per series and
// bucket (counts add, latency histograms add, drift histograms add) and the figures are computed from
// the merged counts: percentiles from the histogram, PSI against the bundle's baseline (psi.ts).
import type { Histogram, Manifest } from '../../shared/messages.ts';
import {
  BUCKET_SECONDS, MAX_BUCKETS, type TelemetryFigures, type TelemetryQuery, type TelemetryResponse, type TelemetrySeries,
} from '../../shared/api/telemetry.ts';
import type { Db } from '../db/database.ts';
import { AppError } from '../errors.ts';
import { psi } from '../rollouts/psi.ts';
import { quantiles } from './latency-histogram.ts';
import { cellFromRow, mergeCell, mergeDrift, type RollupCell } from './rollups.ts';

type Baseline = NonNullable<Manifest['driftBaseline']>;

export function figuresOf(c: RollupCell, baseline: Baseline | null): TelemetryFigures {
  const max = c.maxMs ?? undefined;
  const drift: TelemetryFigures['drift'] = [];
  if (baseline && c.drift) {
    for (const [side, set] of [['input', baseline.inputs], ['output', baseline.outputs]] as const) {
      for (const [name, base] of Object.entries(set) as [string, Histogram][]) {
        const observed = c.drift[`${side}:${name}`];
        if (!observed || observed.length !== base.counts.length) continue;
        const samples = observed.reduce((a, b) => a + b, 0);
        if (samples === 0) continue;
        drift.push({ name: `${side}:${name}`, psi: Math.round(psi(base.counts, observed) * 10_000) / 10_000, samples });
      }
    }
  }
  const [p50, p95, p99] = quantiles(c.latency, [0.5, 0.95, 0.99], max);
  return {
    windows: c.windows, count: c.count, errors: c.errors,
    errorRate: c.count > 0 ? c.errors / c.count : null,
    p50, p95, p99,
    maxMs: c.maxMs, drift,
  };
}

interface Row {
  bucket_start: number; manifest_sha256: string; hardware: string; device_id?: string;
  model_id: string; version: number; windows: number; count: number; errors: number; max_ms: number | null;
  latency_json: string; drift_json: string | null;
}

/** The query's bucket size and time range (defaults: the last hour by minute, the last day by hour), checked. */
function queryRange(q: TelemetryQuery, now: number): { step: number; fromMs: number; toMs: number } {
  const step = BUCKET_SECONDS[q.bucket];
  const toMs = q.to ? Date.parse(q.to) : now;
  const fromMs = q.from ? Date.parse(q.from) : toMs - (q.bucket === 'minute' ? 3600_000 : 86400_000);
  if (!(fromMs < toMs)) throw new AppError('FLEET_ERR_VALIDATION', 'query.from: must be before to', 400);
  const buckets = Math.ceil((toMs - fromMs) / 1000 / step);
  if (buckets > MAX_BUCKETS) {
    throw new AppError('FLEET_ERR_VALIDATION', `query: ${buckets} ${q.bucket} buckets between from and to; at most ${MAX_BUCKETS} (use bucket=hour or a shorter range)`, 400);
  }
  return { step, fromMs, toMs };
}

export function queryTelemetry(db: Db, q: TelemetryQuery, now: number): TelemetryResponse {
  if (q.perModel) return queryModelTelemetry(db, q, now);
  const { step, fromMs, toMs } = queryRange(q, now);
  // buckets are aligned: a range starting mid-bucket includes that bucket
  const from = Math.floor(fromMs / 1000 / step) * step, to = Math.ceil(toMs / 1000);
  const perDevice = q.deviceId !== undefined || q.groupBy.includes('device');
  const table = perDevice ? 'telemetry_device_hour' : q.bucket === 'minute' ? 'telemetry_minute' : 'telemetry_hour';
  const where = ['bucket_start >= ?', 'bucket_start < ?'];
  const args: (string | number)[] = [from, to];
  for (const [col, v] of [['model_id', q.modelId], ['version', q.version], ['hardware', q.hardware], ['device_id', q.deviceId]] as const) {
    if (v !== undefined) { where.push(`${col} = ?`); args.push(v); }
  }
  const rows = db.prepare(`SELECT * FROM ${table} WHERE ${where.join(' AND ')} ORDER BY bucket_start`).all(...args) as Row[];

  const byHw = q.groupBy.includes('hardware'), byDevice = q.groupBy.includes('device');
  const series = new Map<string, { head: Omit<TelemetrySeries, 'total' | 'points'>; points: Map<number, RollupCell> }>();
  for (const r of rows) {
    const key = [r.manifest_sha256, byHw ? r.hardware : '', byDevice ? r.device_id : ''].join('|');
    let s = series.get(key);
    if (!s) {
      s = {
        head: {
          modelId: r.model_id, version: r.version, manifestSha256: r.manifest_sha256,
          ...(byHw ? { hardware: r.hardware === '' ? null : r.hardware } : {}), ...(byDevice ? { deviceId: r.device_id } : {}),
        },
        points: new Map(),
      };
      series.set(key, s);
    }
    const cell = cellFromRow(r);
    const t = r.bucket_start - (r.bucket_start % step);
    const had = s.points.get(t);
    s.points.set(t, had ? mergeCell(had, cell) : cell);
  }

  const baselineOf = baselines(db);

  const out: TelemetrySeries[] = [...series.values()].map((s) => {
    const b = baselineOf(s.head.manifestSha256);
    const total: RollupCell = { modelId: s.head.modelId, version: s.head.version, windows: 0, count: 0, errors: 0, maxMs: null, latency: {}, drift: null };
    for (const c of s.points.values()) mergeCell(total, c);
    return {
      ...s.head,
      total: figuresOf(total, b),
      points: [...s.points.entries()].sort((a, c) => a[0] - c[0]).map(([t, c]) => ({ t: new Date(t * 1000).toISOString(), ...figuresOf(c, b) })),
    };
  });
  out.sort((a, b) => a.modelId.localeCompare(b.modelId) || a.version - b.version || String(a.hardware ?? '').localeCompare(String(b.hardware ?? '')) || String(a.deviceId ?? '').localeCompare(String(b.deviceId ?? '')));
  return { from: new Date(from * 1000).toISOString(), to: new Date(toMs).toISOString(), bucket: q.bucket, groupBy: q.groupBy, series: out };
}

/** A bundle's drift baseline by manifest, read once per query. */
function baselines(db: Db): (sha: string) => Baseline | null {
  const seen = new Map<string, Baseline | null>();
  return (sha) => {
    if (!seen.has(sha)) {
      const row = db.prepare('SELECT envelope_json FROM bundles WHERE manifest_sha256 = ?').pluck().get(sha) as string | undefined;
      const manifest = row ? JSON.parse(JSON.parse(row).signed) as Manifest : null;
      seen.set(sha, manifest?.driftBaseline ?? null);
    }
    return seen.get(sha)!;
  };
}

function median(xs: number[]): number | null {
  if (xs.length === 0) return null;
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

interface ModelRow {
  device_id: string; model_id: string; manifest_sha256: string; version: number | null; hardware: string | null; received_at: number;
  count: number; errors: number; p50: number | null; p95: number | null; p99: number | null; max_ms: number | null; histograms_json: string | null;
}

/**
 * [#19] perModel=true: a series per model of a set (and hardware class, device), from the per-model figures
 * of multi-model windows (telemetry_models, raw rows kept `rawHours`), bucketed by when each window arrived.
 * Counts and errors add; latency percentiles are the medians of the windows' own (per-model figures carry
 * no latency histogram), `maxMs` the largest call; drift sums each model's own histograms against its own
 * bundle's baseline.
 */
function queryModelTelemetry(db: Db, q: TelemetryQuery, now: number): TelemetryResponse {
  const { step, fromMs, toMs } = queryRange(q, now);
  const from = Math.floor(fromMs / 1000 / step) * step;
  const where = ["tm.model_id != '@chain'", 'tm.received_at >= ?', 'tm.received_at < ?'];
  const args: (string | number)[] = [from * 1000, toMs];
  for (const [col, v] of [['tm.model_id', q.modelId], ['b.version', q.version], ['d.hardware', q.hardware], ['tm.device_id', q.deviceId]] as const) {
    if (v !== undefined) { where.push(`${col} = ?`); args.push(v); }
  }
  const rows = db.prepare(`SELECT tm.device_id, tm.model_id, tm.manifest_sha256, b.version, d.hardware, tm.received_at, tm.count, tm.errors, tm.p50, tm.p95, tm.p99, tm.max_ms, tm.histograms_json
    FROM telemetry_models tm LEFT JOIN bundles b ON b.manifest_sha256 = tm.manifest_sha256 LEFT JOIN devices d ON d.device_id = tm.device_id
    WHERE ${where.join(' AND ')} ORDER BY tm.received_at`).all(...args) as ModelRow[];

  const byHw = q.groupBy.includes('hardware'), byDevice = q.groupBy.includes('device');
  const series = new Map<string, { head: Omit<TelemetrySeries, 'total' | 'points'>; points: Map<number, ModelRow[]> }>();
  for (const r of rows) {
    const key = [r.model_id, r.manifest_sha256, byHw ? r.hardware ?? '' : '', byDevice ? r.device_id : ''].join('|');
    let s = series.get(key);
    if (!s) {
      s = {
        head: {
          modelId: r.model_id, version: r.version ?? 0, manifestSha256: r.manifest_sha256,
          ...(byHw ? { hardware: r.hardware ?? null } : {}), ...(byDevice ? { deviceId: r.device_id } : {}),
        },
        points: new Map(),
      };
      series.set(key, s);
    }
    const t = Math.floor(r.received_at / 1000 / step) * step;
    const list = s.points.get(t);
    if (list) list.push(r); else s.points.set(t, [r]);
  }
  const baselineOf = baselines(db);
  const figures = (rs: ModelRow[], baseline: Baseline | null): TelemetryFigures => {
    let drift: Record<string, number[]> | null = null;
    for (const r of rs) {
      if (!r.histograms_json) continue;
      const h = JSON.parse(r.histograms_json) as { inputs?: Record<string, Histogram>; outputs?: Record<string, Histogram> };
      const sums: Record<string, number[]> = {};
      for (const [side, set] of [['input', h.inputs], ['output', h.outputs]] as const) for (const [name, hist] of Object.entries(set ?? {})) sums[`${side}:${name}`] = hist.counts;
      drift = mergeDrift(drift, sums);
    }
    const cell: RollupCell = { modelId: '', version: 0, windows: rs.length, count: 0, errors: 0, maxMs: null, latency: {}, drift };
    const f = figuresOf({ ...cell, count: rs.reduce((a, r) => a + r.count, 0), errors: rs.reduce((a, r) => a + r.errors, 0) }, baseline);
    const timed = rs.filter((r) => r.count > r.errors);
    const pick = (k: 'p50' | 'p95' | 'p99') => median(timed.map((r) => r[k]).filter((x): x is number => x !== null));
    const maxes = timed.map((r) => r.max_ms).filter((x): x is number => x !== null);
    return { ...f, p50: pick('p50'), p95: pick('p95'), p99: pick('p99'), maxMs: maxes.length ? Math.max(...maxes) : null };
  };
  const out: TelemetrySeries[] = [...series.values()].map((s) => {
    const b = baselineOf(s.head.manifestSha256);
    return {
      ...s.head,
      total: figures([...s.points.values()].flat(), b),
      points: [...s.points.entries()].sort((a, c) => a[0] - c[0]).map(([t, rs]) => ({ t: new Date(t * 1000).toISOString(), ...figures(rs, b) })),
    };
  });
  out.sort((a, b) => a.modelId.localeCompare(b.modelId) || a.version - b.version || String(a.hardware ?? '').localeCompare(String(b.hardware ?? '')) || String(a.deviceId ?? '').localeCompare(String(b.deviceId ?? '')));
  return { from: new Date(from * 1000).toISOString(), to: new Date(toMs).toISOString(), bucket: q.bucket, groupBy: q.groupBy, perModel: true, series: out };
}

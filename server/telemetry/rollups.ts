// Rollups of telemetry windows (migration 7): per minute and per hour for each model version
// (manifest) and hardware class, and per hour for each device. They are kept up to date as windows
// are stored (TelemetryWriter calls add() for each newly stored window and write() in the same
// transaction), so a resent window, ignored by the raw table's (device_id, seq) key, is never counted
// twice, and a query never reads raw rows.
import type { Telemetry } from '../../shared/messages.ts';
import type { Db } from '../db/database.ts';
import { addToBuckets, merge, windowBuckets, type LatencyHistogram } from './latency-histogram.ts';

export type DriftSums = Record<string, number[]>;

export interface RollupCell {
  modelId: string; version: number;
  windows: number; count: number; errors: number; maxMs: number | null;
  latency: LatencyHistogram; drift: DriftSums | null;
}

export const MINUTE_S = 60;
export const HOUR_S = 3600;

/** Add `from`'s histograms to `into`'s, key by key; histograms whose bin counts differ are not mixed. */
export function mergeDrift(into: DriftSums | null, from: DriftSums | null): DriftSums | null {
  if (!from) return into;
  const out = into ?? {};
  for (const [k, counts] of Object.entries(from)) {
    const acc = out[k];
    if (!acc) out[k] = [...counts];
    else if (acc.length === counts.length) counts.forEach((c, i) => { acc[i] += c; });
  }
  return out;
}

export function mergeCell(into: RollupCell, from: RollupCell): RollupCell {
  into.windows += from.windows;
  into.count += from.count;
  into.errors += from.errors;
  into.maxMs = into.maxMs === null ? from.maxMs : from.maxMs === null ? into.maxMs : Math.max(into.maxMs, from.maxMs);
  merge(into.latency, from.latency);
  into.drift = mergeDrift(into.drift, from.drift);
  return into;
}

export function emptyCell(like: Pick<RollupCell, 'modelId' | 'version'>): RollupCell {
  return { modelId: like.modelId, version: like.version, windows: 0, count: 0, errors: 0, maxMs: null, latency: {}, drift: null };
}

/** One window as a rollup cell. Latency counts only windows with successful inferences (as the gates do). */
export function cellOf(t: Telemetry & { active: NonNullable<Telemetry['active']> }): RollupCell {
  const c = emptyCell(t.active);
  addToCell(c, t, windowParts(t));
  return c;
}

/** What one window adds to a cell, worked out once for the several rollup rows it feeds. */
interface WindowParts {
  /** successful inferences: only they carry latency */
  ok: number;
  /** the latency buckets of p50, p95, p99 and max (null without successful inferences) */
  buckets: [number, number, number, number] | null;
  /** drift histograms as `${side}:${name}` -> counts */
  drift: [string, number[]][];
}

function windowParts(t: Telemetry): WindowParts {
  const ok = t.count - t.errors;
  const drift: [string, number[]][] = [];
  if (t.inputHistograms) for (const name in t.inputHistograms) drift.push([`input:${name}`, t.inputHistograms[name].counts]);
  if (t.outputHistograms) for (const name in t.outputHistograms) drift.push([`output:${name}`, t.outputHistograms[name].counts]);
  return { ok, buckets: ok > 0 ? windowBuckets(t.latencyMs) : null, drift };
}

/** Add one window to a cell in place: the same sums as mergeCell(cell, cellOf(t)), without the window's own cell. */
function addToCell(c: RollupCell, t: Telemetry, w: WindowParts): void {
  c.windows += 1;
  c.count += t.count;
  c.errors += t.errors;
  if (w.buckets) {
    addToBuckets(c.latency, w.ok, w.buckets);
    c.maxMs = c.maxMs === null ? t.latencyMs.max : Math.max(c.maxMs, t.latencyMs.max);
  }
  for (const [key, counts] of w.drift) {
    const drift = c.drift ??= {};
    const acc = drift[key];
    if (!acc) drift[key] = counts.slice();
    else if (acc.length === counts.length) for (let i = 0; i < counts.length; i++) acc[i] += counts[i];
  }
}

const TABLES = ['telemetry_minute', 'telemetry_hour', 'telemetry_device_hour'] as const;
type Table = typeof TABLES[number];

interface RollupRow {
  model_id: string; version: number; windows: number; count: number; errors: number; max_ms: number | null;
  latency_json: string; drift_json: string | null;
}

export function cellFromRow(r: RollupRow): RollupCell {
  return {
    modelId: r.model_id, version: r.version, windows: r.windows, count: r.count, errors: r.errors, maxMs: r.max_ms,
    latency: JSON.parse(r.latency_json), drift: r.drift_json ? JSON.parse(r.drift_json) : null,
  };
}

function roundedLatency(h: LatencyHistogram): string {
  // the 50/45/4/1 split makes fractions: three decimals are plenty and keep rows small
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(h)) out[k] = Math.round(v * 1000) / 1000;
  return JSON.stringify(out);
}

/** Accumulates one batch of windows, then upserts each touched rollup row once. */
export class RollupBatch {
  private readonly cells = new Map<string, { table: Table; key: (string | number)[]; cell: RollupCell }>();

  add(t: Telemetry, hardware: string | null): void {
    if (!t.active) return; // a device with no model has no inferences to roll up
    const start = Math.floor(Date.parse(t.windowStart) / 1000);
    if (!Number.isFinite(start)) return;
    const hw = hardware ?? '';
    const sha = t.active.manifestSha256;
    // added straight into the batch's cell of each row (one upsert per row per batch, in write())
    const w = windowParts(t);
    const minute = start - (start % MINUTE_S), hour = start - (start % HOUR_S);
    addToCell(this.cellFor('telemetry_minute', `m|${minute}|${sha}|${hw}`, [minute, sha, hw], t.active), t, w);
    addToCell(this.cellFor('telemetry_hour', `h|${hour}|${sha}|${hw}`, [hour, sha, hw], t.active), t, w);
    addToCell(this.cellFor('telemetry_device_hour', `d|${t.deviceId}|${hour}|${sha}|${hw}`, [t.deviceId, hour, sha, hw], t.active), t, w);
  }

  /** the batch's cell of a row, made empty (with the window's model id and version) on its first window */
  private cellFor(table: Table, id: string, key: (string | number)[], like: Pick<RollupCell, 'modelId' | 'version'>): RollupCell {
    let had = this.cells.get(id);
    if (!had) this.cells.set(id, had = { table, key, cell: emptyCell(like) });
    return had.cell;
  }

  get size(): number { return this.cells.size; }

  /**
   * Upsert every touched row; call inside the transaction that stored the raw windows. With a cache,
   * a row written before is merged from memory instead of read back and parsed; the cache learns the
   * new rows only through commit(), after that transaction committed (a rolled-back batch teaches it nothing).
   */
  write(db: Db, cache?: RollupCache): { commit(): void } {
    const sql = statements(db);
    const learned: [string, RollupCell][] = [];
    for (const [id, { table, key, cell }] of this.cells) {
      const s = sql[table];
      const pk = table === 'telemetry_device_hour' ? key.slice(0, 3) : key;
      let old = cache?.get(id) ?? null;
      if (!old) {
        const row = s.get.get(...pk) as RollupRow | undefined;
        old = row ? cellFromRow(row) : null;
      } else old = cloneCell(old);
      const merged = old ? mergeCell(old, cell) : cell;
      s.put.run(...key, merged.modelId, merged.version, merged.windows, merged.count, merged.errors, merged.maxMs,
        roundedLatency(merged.latency), merged.drift ? JSON.stringify(merged.drift) : null);
      if (cache) learned.push([id, merged]);
    }
    this.cells.clear();
    return { commit: () => { if (cache) for (const [id, c] of learned) cache.set(id, c); } };
  }
}

function cloneCell(c: RollupCell): RollupCell {
  return { ...c, latency: { ...c.latency }, drift: c.drift ? Object.fromEntries(Object.entries(c.drift).map(([k, v]) => [k, [...v]])) : null };
}

/**
 * The rollup rows this writer wrote last, by row id, so the next window for the same row (a device's
 * next window in the same hour) is merged without reading the row back. Bounded: at most `limit` rows,
 * the oldest dropped first (a dropped row is read from SQLite again, as without a cache). Only the
 * telemetry writer writes these tables (the pruner deletes rows of buckets far older than any it writes).
 */
export class RollupCache {
  private readonly rows = new Map<string, RollupCell>();
  constructor(private readonly limit = 50_000) {}
  get(id: string): RollupCell | undefined { return this.rows.get(id); }
  set(id: string, c: RollupCell): void {
    this.rows.delete(id);
    this.rows.set(id, c);
    if (this.rows.size > this.limit) this.rows.delete(this.rows.keys().next().value!);
  }
  get size(): number { return this.rows.size; }
}

const prepared = new WeakMap<Db, ReturnType<typeof prepare>>();
function statements(db: Db) {
  let s = prepared.get(db);
  if (!s) { s = prepare(db); prepared.set(db, s); }
  return s;
}

function prepare(db: Db) {
  const cols = 'model_id, version, windows, count, errors, max_ms, latency_json, drift_json';
  // an update in place (INSERT OR REPLACE deletes and inserts the row, and touches every index twice)
  const update = cols.split(', ').map((c) => `${c} = excluded.${c}`).join(', ');
  const fleet = (table: string) => ({
    get: db.prepare(`SELECT ${cols} FROM ${table} WHERE bucket_start = ? AND manifest_sha256 = ? AND hardware = ?`),
    put: db.prepare(`INSERT INTO ${table} (bucket_start, manifest_sha256, hardware, ${cols}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
      ON CONFLICT (bucket_start, manifest_sha256, hardware) DO UPDATE SET ${update}`),
  });
  return {
    telemetry_minute: fleet('telemetry_minute'),
    telemetry_hour: fleet('telemetry_hour'),
    telemetry_device_hour: {
      get: db.prepare(`SELECT ${cols} FROM telemetry_device_hour WHERE device_id = ? AND bucket_start = ? AND manifest_sha256 = ?`),
      put: db.prepare(`INSERT INTO telemetry_device_hour (device_id, bucket_start, manifest_sha256, hardware, ${cols}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT (device_id, bucket_start, manifest_sha256) DO UPDATE SET hardware = excluded.hardware, ${update}`),
    },
  };
}

// Telemetry storage: bytes per device-day and query time over 7 days of a 10,000-device fleet that
// sends one window a minute per device (two model versions, four hardware classes).
//
// How, in two parts (both on a real SQLite file, WAL, as the server opens it):
// 1. The pipeline at small scale: `devices` devices x `minutes` minutes of realistic windows (an
//    8-bin input histogram and a 4-class output histogram, as the tiny classifier sends) go through
//    the real TelemetryWriter, which stores the raw rows and updates the minute, hour and device-hour
//    rollups. SQLite's dbstat gives each table's bytes (indexes included): bytes per raw window, per
//    device-hour rollup row, per fleet minute/hour row. Also reported: windows/s through the writer.
// 2. The 7-day fleet, written directly where raw windows would have been pruned: the rollups of
//    10,000 devices x 168 hours (1.68 M device-hour rows, each one of 32 device-hours per version made
//    by the writer's own cellOf/mergeCell from 60 windows) and the fleet minute/hour rows; then the queries an operator runs, timed (median of runs).
//    Raw windows are not written at full scale (14.4 M rows for the 24 h retention): their bytes
//    are extrapolated from part 1's measured bytes per window.
// bytes per device-day = what one device adds per day to each table; steady state = a 10,000-device
// database under the default retention (raw 24 h, fleet minute rollups 14 d, fleet hour rollups 400 d,
// device-hour rollups 90 d).
// Run alone: npx tsx bench/telemetry-store.ts [--devices N] [--minutes N] [--fleet N] [--days N]
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { openDatabase, type Db } from '../server/db/database.ts';
import { TelemetryWriter } from '../server/devices/telemetry-writer.ts';
import { cellOf, HOUR_S, MINUTE_S, mergeCell, type RollupCell } from '../server/telemetry/rollups.ts';
import { queryTelemetry } from '../server/telemetry/query.ts';
import { TelemetryQuery } from '../shared/api/telemetry.ts';
import type { Telemetry } from '../shared/messages.ts';
import { seededRandom } from '../server/bundles/golden-vectors.ts';
import { isMain, median, round, runAlone, withTempDir } from './util.ts';

const HW = ['cam-a', 'cam-b', 'cam-c', 'cam-d'];
const SHA = ['a', 'b'].map((c) => c.repeat(64));
const T0 = Date.parse('2026-03-02T00:00:00.000Z');
const DEFAULT_RETENTION = { rawHours: 24, minuteDays: 14, hourDays: 400, deviceHourDays: 90 };
export const TARGETS = {
  steadyStateBytesPerDevice: 5 * 1024 * 1024,
  deviceHourBytesPerDeviceDay: 16 * 1024,
  fleetQuery7dMs: 500,
  deviceQuery7dMs: 50,
};

function windowOf(rand: () => number, deviceId: string, seq: number, minuteStart: number, version: number): Telemetry {
  const count = 50 + Math.floor(rand() * 20);
  const p50 = 18 + rand() * 4;
  const x = Array.from({ length: 8 }, () => Math.floor(rand() * 50));
  return {
    deviceId, seq, windowStart: new Date(minuteStart).toISOString(), windowEnd: new Date(minuteStart + 60_000).toISOString(),
    active: { modelId: 'tiny', version, manifestSha256: SHA[version - 1] },
    count, errors: rand() < 0.05 ? 1 : 0,
    latencyMs: { p50, p95: p50 * 1.3, p99: p50 * 1.6, max: p50 * 2 },
    rssBytes: 40_000_000 + Math.floor(rand() * 1_000_000),
    inputHistograms: { x: { kind: 'values', edges: [0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875], counts: x } },
    outputHistograms: { probs: { kind: 'argmax', edges: [], counts: [count >> 2, count >> 2, count >> 2, count - 3 * (count >> 2)] } },
  };
}

/** as the writer stores it: weights to three decimals */
function latencyJson(c: RollupCell): string {
  return JSON.stringify(Object.fromEntries(Object.entries(c.latency).map(([k, v]) => [k, Math.round(v * 1000) / 1000])));
}

function tableBytes(db: Db): Record<string, number> {
  db.pragma('wal_checkpoint(TRUNCATE)');
  const rows = db.prepare('SELECT name, SUM(pgsize) AS bytes FROM dbstat GROUP BY name').all() as { name: string; bytes: number }[];
  return Object.fromEntries(rows.map((r) => [r.name, r.bytes]));
}

const sum = (b: Record<string, number>, names: string[]) => names.reduce((a, n) => a + (b[n] ?? 0), 0);

export interface TelemetryStoreOptions { devices?: number; minutes?: number; fleet?: number; days?: number; runs?: number }

export async function benchTelemetryStore(o: TelemetryStoreOptions = {}) {
  const devices = o.devices ?? 200, minutes = o.minutes ?? 120, fleet = o.fleet ?? 10_000, days = o.days ?? 7, runs = o.runs ?? 3;
  return withTempDir('fleet-bench-telemetry-', async (dir) => {
    // ---- 1. the pipeline, small -------------------------------------------------------------
    const small = openDatabase(join(dir, 'small.db'));
    const ins = small.prepare("INSERT INTO devices (device_id, hardware, first_seen, last_seen) VALUES (?, ?, 'x', 'x')");
    for (let d = 0; d < devices; d++) ins.run(`dev-${d}`, HW[d % 4]);
    const writer = new TelemetryWriter(small, { maxBatch: 500 });
    const rand = seededRandom(7);
    const t0 = performance.now();
    for (let m = 0; m < minutes; m++) {
      for (let d = 0; d < devices; d++) writer.add(windowOf(rand, `dev-${d}`, m, T0 + m * 60_000, d % 2 ? 2 : 1));
    }
    await writer.close();
    const writeMs = performance.now() - t0;
    const windows = devices * minutes;
    const b = tableBytes(small);
    const rawBytes = sum(b, ['telemetry', 'sqlite_autoindex_telemetry_1', 'telemetry_manifest', 'telemetry_received']);
    const deviceHourRows = small.prepare('SELECT COUNT(*) FROM telemetry_device_hour').pluck().get() as number;
    const deviceHourBytes = sum(b, ['telemetry_device_hour', 'telemetry_device_hour_start']);
    const minuteRows = small.prepare('SELECT COUNT(*) FROM telemetry_minute').pluck().get() as number;
    const perRaw = rawBytes / windows, perDeviceHour = deviceHourBytes / deviceHourRows, perMinuteRow = (b.telemetry_minute ?? 0) / minuteRows;
    small.close();

    // ---- 2. seven days of a 10,000-device fleet, rollups written directly ------------------------
    const big = openDatabase(join(dir, 'fleet.db'));
    const tw = performance.now();
    const hours = days * 24;
    const cols = 'model_id, version, windows, count, errors, max_ms, latency_json, drift_json';
    const putFleet = (table: string) => big.prepare(`INSERT OR REPLACE INTO ${table} (bucket_start, manifest_sha256, hardware, ${cols}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`);
    const putMinute = putFleet('telemetry_minute'), putHour = putFleet('telemetry_hour');
    const r2 = seededRandom(9);
    const json = (c: RollupCell) => [c.modelId, c.version, c.windows, c.count, c.errors, c.maxMs, latencyJson(c), c.drift ? JSON.stringify(c.drift) : null] as const;
    // a device-hour cell is 60 windows of one device; 32 such cells per version are made through the
    // writer's own cellOf/mergeCell and reused round-robin (JSON made once each), so the bench spends its
    // time in SQLite, not in making up data
    const templates = [1, 2].map((version) => Array.from({ length: 32 }, (_, k) => {
      let cell: RollupCell | null = null;
      for (let m = 0; m < 60; m++) {
        const c = cellOf(windowOf(r2, 'dev-t', m, T0 + m * 60_000, version) as Telemetry & { active: NonNullable<Telemetry['active']> });
        cell = cell ? mergeCell(cell, c) : c;
      }
      return { cell: cell!, row: json(cell!), k };
    }));
    // the device-hour rows in one INSERT ... SELECT: device d, hour h gets template (d + h) % 32 of its version
    big.exec('CREATE TEMP TABLE tpl (version INTEGER, k INTEGER, windows INTEGER, count INTEGER, errors INTEGER, max_ms REAL, latency_json TEXT, drift_json TEXT)');
    const putTpl = big.prepare('INSERT INTO tpl VALUES (?, ?, ?, ?, ?, ?, ?, ?)');
    for (const set of templates) for (const t of set) putTpl.run(t.row[1], t.k, ...t.row.slice(2));
    big.prepare(`WITH RECURSIVE d(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM d WHERE i < ?), h(j) AS (SELECT 0 UNION ALL SELECT j + 1 FROM h WHERE j < ?)
      INSERT INTO telemetry_device_hour (device_id, bucket_start, manifest_sha256, hardware, ${cols})
      SELECT 'dev-' || d.i, ? + h.j * 3600, CASE d.i % 2 WHEN 1 THEN ? ELSE ? END, 'cam-' || char(97 + d.i % 4),
        'tiny', t.version, t.windows, t.count, t.errors, t.max_ms, t.latency_json, t.drift_json
      FROM d, h JOIN tpl t ON t.version = 1 + d.i % 2 AND t.k = (d.i + h.j) % 32`).run(fleet - 1, hours - 1, T0 / 1000, SHA[1], SHA[0]);
    // fleet rows per (version, hardware): the version's templates merged and scaled to fleet / 8 devices
    const perKey = fleet / 8;
    big.transaction(() => {
      for (const set of templates) {
        const hourCell = set.reduce((acc, t) => mergeCell(acc, t.cell), { ...set[0].cell, windows: 0, count: 0, errors: 0, maxMs: null, latency: {}, drift: null } as RollupCell);
        const scale = perKey / set.length;
        const scaled = (c: RollupCell, f: number): RollupCell => ({
          ...c, windows: Math.round(c.windows * f), count: Math.round(c.count * f), errors: Math.round(c.errors * f),
          latency: Object.fromEntries(Object.entries(c.latency).map(([k, v]) => [k, v * f])),
          drift: c.drift ? Object.fromEntries(Object.entries(c.drift).map(([k, v]) => [k, v.map((x) => Math.round(x * f))])) : null,
        });
        const hourRow = json(scaled(hourCell, scale)), minuteRow = json(scaled(hourCell, scale / 60));
        const version = hourCell.version;
        for (const hw of HW) {
          for (let h = 0; h < hours; h++) {
            const hourStart = T0 / 1000 + h * HOUR_S;
            putHour.run(hourStart, SHA[version - 1], hw, ...hourRow);
            for (let m = 0; m < 60; m++) putMinute.run(hourStart + m * MINUTE_S, SHA[version - 1], hw, ...minuteRow);
          }
        }
      }
    })();
    const generateMs = performance.now() - tw;
    const bb = tableBytes(big);
    const fleetDeviceHourBytes = sum(bb, ['telemetry_device_hour', 'telemetry_device_hour_start']);
    const fleetMinuteBytes = bb.telemetry_minute ?? 0, fleetHourBytes = bb.telemetry_hour ?? 0;

    const time = (q: Record<string, string>) => {
      const parsed = TelemetryQuery.parse(q);
      const ms: number[] = [], cpu: number[] = [];
      let series = 0, points = 0;
      for (let i = 0; i < runs; i++) {
        const s = performance.now(), c = process.cpuUsage();
        const r = queryTelemetry(big, parsed, T0 + days * 86400_000);
        ms.push(performance.now() - s);
        const used = process.cpuUsage(c);
        cpu.push((used.user + used.system) / 1000);
        series = r.series.length; points = r.series.reduce((a, x) => a + x.points.length, 0);
      }
      // wall time and this process's CPU time: on a shared machine the first can be several times the second
      return { medianMs: round(median(ms), 1), medianCpuMs: round(median(cpu), 1), series, points };
    };
    const from = new Date(T0).toISOString(), to = new Date(T0 + days * 86400_000).toISOString();
    const queries = {
      fleetPerVersionHour7d: time({ from, to, bucket: 'hour' }),
      fleetPerVersionAndHardwareMinute7d: time({ from, to, bucket: 'minute', groupBy: 'hardware' }),
      oneDeviceHour7d: time({ from, to, bucket: 'hour', deviceId: `dev-${Math.floor(fleet * 0.4242)}` }),
      oneHardwareClassPerDeviceHour24h: time({ from: new Date(T0 + (days - 1) * 86400_000).toISOString(), to, bucket: 'hour', groupBy: 'device', hardware: 'cam-c' }),
    };
    big.close();

    const deviceDays = fleet * days;
    const perDevDay = {
      raw: Math.round(perRaw * 1440),
      deviceHour: Math.round(fleetDeviceHourBytes / deviceDays),
      fleetMinute: Math.round(fleetMinuteBytes / deviceDays),
      fleetHour: Math.round(fleetHourBytes / deviceDays),
    };
    const steady = perDevDay.raw * DEFAULT_RETENTION.rawHours / 24 + perDevDay.deviceHour * DEFAULT_RETENTION.deviceHourDays
      + perDevDay.fleetMinute * DEFAULT_RETENTION.minuteDays + perDevDay.fleetHour * DEFAULT_RETENTION.hourDays;
    return {
      method: `pipeline measured on ${devices} devices x ${minutes} min through TelemetryWriter; ${fleet} devices x ${days} d of rollups written directly; raw extrapolated from measured bytes per window`,
      pipeline: {
        windows, writeMs: Math.round(writeMs), windowsPerSecond: Math.round(windows / (writeMs / 1000)),
        bytesPerRawWindow: Math.round(perRaw), bytesPerDeviceHourRow: Math.round(perDeviceHour), bytesPerFleetMinuteRow: Math.round(perMinuteRow),
      },
      fleet: { devices: fleet, days, deviceHourRows: fleet * hours, generateMs: Math.round(generateMs), dbBytesWithoutRaw: fleetDeviceHourBytes + fleetMinuteBytes + fleetHourBytes },
      bytesPerDeviceDay: { ...perDevDay, targetDeviceHour: TARGETS.deviceHourBytesPerDeviceDay },
      rawWithoutRollupsBytesPerDeviceDay: perDevDay.raw,
      steadyState: {
        retention: DEFAULT_RETENTION, bytesPerDevice: Math.round(steady), target: TARGETS.steadyStateBytesPerDevice,
        fleetBytes: Math.round(steady * fleet), unprunedRawForSameHistoryBytes: Math.round(perDevDay.raw * DEFAULT_RETENTION.hourDays * fleet),
      },
      queries: { ...queries, targetFleet7dMs: TARGETS.fleetQuery7dMs, targetDevice7dMs: TARGETS.deviceQuery7dMs },
      hourBucketSeconds: HOUR_S,
    };
  });
}

if (isMain(import.meta.url)) {
  const { values } = parseArgs({ options: { devices: { type: 'string' }, minutes: { type: 'string' }, fleet: { type: 'string' }, days: { type: 'string' } } });
  const n = (s: string | undefined) => (s === undefined ? undefined : Number(s));
  void runAlone(() => benchTelemetryStore({ devices: n(values.devices), minutes: n(values.minutes), fleet: n(values.fleet), days: n(values.days) }));
}

// Telemetry rollups and retention on a real SQLite file: exact counts, merged latency histograms,
// resends counted once, bounded pruning with an injected clock, and gate figures unchanged by pruning.
import { afterEach, describe, expect, it } from 'vitest';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { openDatabase, type Db } from '../../server/db/database.ts';
import { TelemetryWriter } from '../../server/devices/telemetry-writer.ts';
import { addWindow, bucketOf, merge, quantile, upperEdge, type LatencyHistogram } from '../../server/telemetry/latency-histogram.ts';
import { TelemetryRetention } from '../../server/telemetry/retention.ts';
import { queryTelemetry } from '../../server/telemetry/query.ts';
import { gateFigures } from '../../server/rollouts/gate-figures.ts';
import { TelemetryQuery } from '../../shared/api/telemetry.ts';
import type { Manifest } from '../../shared/messages.ts';
import { tempDir } from '../helpers/harness.ts';
import { T0, sha, win } from './windows.ts';

const A = sha('a'), B = sha('b');
let dir: string | null = null;
let db: Db | null = null;

function open(): Db {
  dir = tempDir('fleet-telemetry-');
  db = openDatabase(join(dir, 'fleet.db'));
  const ins = db.prepare("INSERT INTO devices (device_id, hardware, first_seen, last_seen) VALUES (?, ?, 'x', 'x')");
  ins.run('d1', 'cam-a'); ins.run('d2', 'cam-a'); ins.run('d3', 'cam-b');
  return db;
}

/** a writer (its own thread on the test's database file), closed after the test */
let writers: TelemetryWriter[] = [];
function writer(d: Db, now: () => number): TelemetryWriter {
  const w = new TelemetryWriter(d, { now });
  writers.push(w);
  return w;
}

afterEach(async () => {
  await Promise.all(writers.map((w) => w.close())); writers = [];
  db?.close(); db = null;
  if (dir) rmSync(dir, { recursive: true, force: true });
  dir = null;
});

const count = (d: Db, table: string) => d.prepare(`SELECT COUNT(*) FROM ${table}`).pluck().get() as number;
const q = (input: Record<string, unknown>) => TelemetryQuery.parse(input);

describe('latency histogram', () => {
  it('gives one window its own p50/p95/p99 back within one 10% bucket, never above max', () => {
    const h: LatencyHistogram = {};
    addWindow(h, 1000, { p50: 12, p95: 31, p99: 55, max: 60 });
    for (const [qq, v] of [[0.5, 12], [0.95, 31], [0.99, 55]] as const) {
      const got = quantile(h, qq, 60)!;
      expect(got).toBeGreaterThanOrEqual(v);
      expect(got).toBeLessThanOrEqual(v * 1.1);
    }
    expect(quantile({}, 0.5)).toBeNull();
    expect(quantile(h, 1, 60)).toBe(60);
  });

  it('weights merged windows by inference count, not one vote per window', () => {
    const busy: LatencyHistogram = {}, idle: LatencyHistogram = {};
    addWindow(busy, 900, { p50: 10, p95: 10, p99: 10, max: 10 });
    addWindow(idle, 100, { p50: 100, p95: 100, p99: 100, max: 100 });
    const m = merge(merge({}, busy), idle);
    // 90% of the inferences took 10 ms: the fleet p50 is 10 ms (averaging the two p50s would say 55)
    expect(quantile(m, 0.5)).toBe(Math.round(upperEdge(bucketOf(10)) * 1000) / 1000);
    expect(quantile(m, 0.95)).toBe(Math.round(upperEdge(bucketOf(100)) * 1000) / 1000);
  });
});

describe('rollups', () => {
  it('adds windows per minute, per hour and per device hour, and counts a resent window once', async () => {
    const d = open();
    const w = writer(d, () => T0 + 3 * 60_000);
    w.add(win({ deviceId: 'd1', seq: 1, minute: 0, manifest: A, count: 100, errors: 2, x: [1, 2, 3] }));
    w.add(win({ deviceId: 'd2', seq: 1, minute: 0, manifest: A, count: 50, errors: 0, x: [3, 2, 1] }));
    w.add(win({ deviceId: 'd3', seq: 1, minute: 0, manifest: A, count: 10, errors: 10 }));
    w.add(win({ deviceId: 'd1', seq: 2, minute: 1, manifest: A, count: 100, errors: 0 }));
    w.add(win({ deviceId: 'd1', seq: 3, minute: 1, manifest: B, version: 2, count: 7, errors: 1 }));
    await w.flush();
    w.add(win({ deviceId: 'd1', seq: 1, minute: 0, manifest: A, count: 100, errors: 2 })); // resent
    await w.flush();
    expect(w.stored).toBe(5);
    expect(w.duplicates).toBe(1);
    // minute rows: (0, A, cam-a), (0, A, cam-b), (1, A, cam-a), (1, B, cam-a)
    expect(count(d, 'telemetry_minute')).toBe(4);
    // hour rows: (A, cam-a), (A, cam-b), (B, cam-a)
    expect(count(d, 'telemetry_hour')).toBe(3);
    // device hours: d1/A, d1/B, d2/A, d3/A
    expect(count(d, 'telemetry_device_hour')).toBe(4);
    const m0 = d.prepare("SELECT windows, count, errors, drift_json FROM telemetry_minute WHERE bucket_start = ? AND manifest_sha256 = ? AND hardware = 'cam-a'").get(T0 / 1000, A);
    expect(m0).toEqual({ windows: 2, count: 150, errors: 2, drift_json: JSON.stringify({ 'input:x': [4, 4, 4] }) });

    const all = queryTelemetry(d, q({ from: new Date(T0).toISOString(), to: new Date(T0 + 3600_000).toISOString(), bucket: 'minute' }), T0);
    expect(all.series.map((s) => [s.version, s.total.count, s.total.errors])).toEqual([[1, 260, 12], [2, 7, 1]]);
    expect(all.series[0].points.map((p) => [p.t, p.count])).toEqual([[new Date(T0).toISOString(), 160], [new Date(T0 + 60_000).toISOString(), 100]]);
    expect(all.series[0].total.errorRate).toBeCloseTo(12 / 260, 12);
    // every window reported p50 10, p95 20, p99 30, max 40
    expect(all.series[0].total.p50).toBeGreaterThanOrEqual(10);
    expect(all.series[0].total.p50).toBeLessThanOrEqual(11);
    expect(all.series[0].total.p95).toBeGreaterThanOrEqual(20);
    expect(all.series[0].total.p95).toBeLessThanOrEqual(22);

    const byHw = queryTelemetry(d, q({ from: new Date(T0).toISOString(), to: new Date(T0 + 3600_000).toISOString(), bucket: 'hour', groupBy: 'hardware', modelId: 'tiny', version: '1' }), T0);
    expect(byHw.series.map((s) => [s.hardware, s.total.count, s.total.errors, s.points.length])).toEqual([['cam-a', 250, 2, 1], ['cam-b', 10, 10, 1]]);
    // a window with only errors has no latency
    expect(byHw.series[1].total.p95).toBeNull();

    const dev = queryTelemetry(d, q({ from: new Date(T0).toISOString(), to: new Date(T0 + 3600_000).toISOString(), bucket: 'hour', deviceId: 'd1', groupBy: 'device' }), T0);
    expect(dev.series.map((s) => [s.deviceId, s.version, s.total.count, s.total.windows])).toEqual([['d1', 1, 200, 2], ['d1', 2, 7, 1]]);
  });
});

describe('retention', () => {
  it('prunes raw windows past their retention in bounded ticks, keeps those an unfinished campaign judges, and its gate figures stay the same', async () => {
    const d = open();
    const received = T0;
    const w = writer(d, () => received);
    // model A (the old one) and B (the campaign's new one) on d1 and d2; model C on d3, in no campaign
    const C = sha('c');
    let seq = 0;
    for (let m = 0; m < 5; m++) {
      w.add(win({ deviceId: 'd1', seq: ++seq, minute: m, manifest: A, p95: 20, p99: 30 }));
      w.add(win({ deviceId: 'd2', seq: ++seq, minute: m, manifest: B, version: 2, p95: 25, p99: 35, x: [10, 20, 30] }));
      w.add(win({ deviceId: 'd3', seq: ++seq, minute: m, manifest: C, version: 3 }));
    }
    await w.flush();
    expect(count(d, 'telemetry')).toBe(15);
    // a running campaign of B whose device d2 ran A before (rows as the engine writes them)
    d.prepare("INSERT INTO models (model_id, latest_version, created_at) VALUES ('tiny', 3, 'x')").run();
    d.prepare("INSERT INTO artifacts (sha256, length, created_at) VALUES (?, 1, 'x')").run(sha('f'));
    d.prepare("INSERT INTO bundles (manifest_sha256, model_id, version, artifact_sha256, envelope_json, report_json, created_at) VALUES (?, 'tiny', 2, ?, '{}', '{}', 'x')").run(B, sha('f'));
    d.prepare("INSERT INTO campaigns (campaign_id, manifest_sha256, model_id, version, status, config_json, wave_started_at, created_by, created_at, updated_at) VALUES ('c1', ?, 'tiny', 2, 'running', '{}', 0, 'alice', 'x', 'x')").run(B);
    d.prepare("INSERT INTO campaign_devices (campaign_id, device_id, ordinal, wave, state, previous_manifest_sha256) VALUES ('c1', 'd2', 0, 0, 'updated', ?)").run(A);
    d.prepare("INSERT INTO campaign_devices (campaign_id, device_id, ordinal, wave, state, previous_manifest_sha256) VALUES ('c1', 'd1', 1, 0, 'updated', ?)").run(A);
    const manifest = { driftBaseline: { inputs: { x: { kind: 'values', edges: [0.3, 0.6], counts: [30, 30, 40] } }, outputs: {} } } as unknown as Manifest;
    const before = gateFigures(d, 'c1', 0, manifest, B);
    expect(before.reporting).toBe(1);
    expect(before.inferences).toBe(500);
    expect(before.latency).toEqual({ newP95: 25, oldP95: 20, newP99: 35, oldP99: 30 });
    expect(before.drift).toHaveLength(1);

    let now = received + 47 * 3600_000;
    const r = new TelemetryRetention(d, { rawHours: 48, minuteDays: 14, hourDays: 400, deviceHourDays: 90, maxRowsPerTick: 2 }, () => now);
    expect(r.tick()).toEqual({ raw: 0, minute: 0, hour: 0, deviceHour: 0, protectedManifests: 2 });
    now = received + 49 * 3600_000;
    // only C's five rows may go, two per tick
    expect(r.tick().raw).toBe(2);
    expect(r.tick().raw).toBe(2);
    expect(r.tick().raw).toBe(1);
    expect(r.tick().raw).toBe(0);
    expect(d.prepare('SELECT COUNT(*) FROM telemetry WHERE manifest_sha256 = ?').pluck().get(C)).toBe(0);
    expect(count(d, 'telemetry')).toBe(10);
    expect(gateFigures(d, 'c1', 0, manifest, B)).toEqual(before);
    // rollups outlive raw windows: C is still there per minute
    expect(d.prepare('SELECT SUM(count) FROM telemetry_minute WHERE manifest_sha256 = ?').pluck().get(C)).toBe(500);

    // the campaign finishes: its rows are no longer protected
    d.prepare("UPDATE campaigns SET status = 'completed'").run();
    for (let i = 0; i < 5; i++) r.tick();
    expect(count(d, 'telemetry')).toBe(0);
    expect(r.totals.raw).toBe(15);

    // minute rollups go after 14 days, device-hour rollups after 90, fleet hour rollups after 400
    now = received + 15 * 86400_000;
    expect(count(d, 'telemetry_minute')).toBe(15); // 5 minutes x 3 models
    expect(r.tick().minute).toBe(2);
    for (let i = 0; i < 7; i++) r.tick();
    expect(count(d, 'telemetry_minute')).toBe(0);
    expect(count(d, 'telemetry_hour')).toBe(3);
    expect(count(d, 'telemetry_device_hour')).toBe(3);
    now = received + 91 * 86400_000;
    r.tick(); r.tick();
    expect(count(d, 'telemetry_hour')).toBe(3);
    expect(count(d, 'telemetry_device_hour')).toBe(0);
    now = received + 401 * 86400_000;
    r.tick(); r.tick();
    expect(count(d, 'telemetry_hour')).toBe(0);
  });
});

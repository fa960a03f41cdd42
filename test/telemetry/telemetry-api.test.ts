// GET /v1/telemetry and GET /metrics on a real server: auth, clear 400s, exact figures with PSI against
// the bundle's own baseline, and every metric the Grafana dashboard queries present in /metrics.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { pushBundle, startTestServer, type TestServer } from '../helpers/harness.ts';
import { tinyClassifier } from '../helpers/tiny-models.ts';
import { tinyReference } from '../helpers/campaigns.ts';
import { psi } from '../../server/rollouts/psi.ts';
import { TelemetryResponse } from '../../shared/api/telemetry.ts';
import { win } from './windows.ts';
import { runFleetctl } from '../helpers/fleetctl.ts';
import { startInjectServer } from '../api/small-server.ts';

describe('telemetry query API and /metrics', { timeout: 60_000 }, () => {
  let server: TestServer;
  let manifest: string;
  let baseline: number[];
  const now = Date.now();
  const start = now - (now % 3600_000) - 3600_000; // the previous whole hour

  beforeAll(async () => {
    server = await startTestServer();
    const b = await pushBundle(server, 'tiny', tinyClassifier(3), { quantize: 'none', reference: tinyReference(), healthCheck: { latencyBudgetMs: 5000 } });
    manifest = b.manifestSha256;
    const m = server.app.fleet.director.bundleEnvelope(manifest).manifest;
    baseline = m.driftBaseline!.inputs.x.counts;
    const { db, ingest } = server.app.fleet;
    const ins = db.prepare("INSERT INTO devices (device_id, hardware, first_seen, last_seen, online) VALUES (?, ?, 'x', 'x', ?)");
    ins.run('d1', 'cam-a', 1); ins.run('d2', 'cam-b', 0);
    // d1: 2 windows of 100 inferences, 1 error each; d2: 1 window of 50, 5 errors; every window's x histogram is the baseline shifted
    const shifted = baseline.map((_, i) => baseline[(i + 1) % baseline.length]);
    ingest.telemetry.add(win({ start, deviceId: 'd1', seq: 1, minute: 0, manifest, count: 100, errors: 1, x: shifted }));
    ingest.telemetry.add(win({ start, deviceId: 'd1', seq: 2, minute: 1, manifest, count: 100, errors: 1, x: shifted }));
    ingest.telemetry.add(win({ start, deviceId: 'd2', seq: 1, minute: 1, manifest, count: 50, errors: 5, x: shifted }));
    await ingest.telemetry.flush();
  });
  afterAll(async () => { await server?.close(); });

  const get = (url: string, headers: Record<string, string> = {}) => server.app.inject({ method: 'GET', url, headers });
  const range = () => `from=${new Date(start).toISOString()}&to=${new Date(start + 3600_000).toISOString()}`;

  it('needs a token', async () => {
    const res = await server.anonInject({ method: 'GET', url: '/v1/telemetry' });
    expect(res.statusCode).toBe(401);
    expect((await server.anonInject({ method: 'GET', url: '/metrics' })).statusCode).toBe(401);
  });

  it.each([
    ['bucket=day', 'query.bucket'],
    ['groupBy=region', 'groupBy: "region" is not one of hardware, device'],
    ['groupBy=device&bucket=minute', 'per-device figures are kept per hour'],
    ['deviceId=d1', 'per-device figures are kept per hour'],
    ['version=2', 'version needs modelId'],
    ['from=yesterday', 'query.from'],
    ['from=2026-01-01T00:00:00Z&to=2025-01-01T00:00:00Z', 'query.from: must be before to'],
    ['from=2020-01-01T00:00:00Z&to=2026-01-01T00:00:00Z&bucket=minute', 'buckets between from and to; at most 10080'],
    ['limit=5', 'query'],
  ])('refuses %s with a 400 naming the field', async (qs, message) => {
    const res = await get(`/v1/telemetry?${qs}`);
    expect(res.statusCode).toBe(400);
    expect(res.json().error).toBe('FLEET_ERR_VALIDATION');
    expect(res.json().message).toContain(message);
  });

  it('answers per model version and hardware with counts, error rate, percentiles and PSI against the baseline', async () => {
    const res = await get(`/v1/telemetry?${range()}&bucket=minute&groupBy=hardware&modelId=tiny`);
    expect(res.statusCode).toBe(200);
    const body = TelemetryResponse.parse(res.json());
    expect(body.series.map((s) => [s.hardware, s.total.count, s.total.errors, s.points.length])).toEqual([['cam-a', 200, 2, 2], ['cam-b', 50, 5, 1]]);
    expect(body.series[0].total.errorRate).toBeCloseTo(0.01, 12);
    expect(body.series[1].total.errorRate).toBeCloseTo(0.1, 12);
    const summed = baseline.map((_, i) => 2 * baseline[(i + 1) % baseline.length]);
    expect(body.series[0].total.drift).toEqual([{ name: 'input:x', psi: Math.round(psi(baseline, summed) * 10_000) / 10_000, samples: summed.reduce((a, b) => a + b, 0) }]);
    expect(body.series[0].total.drift[0].psi).toBeGreaterThan(0.1);
    expect(body.series[0].total.p95).toBeGreaterThanOrEqual(20);
    expect(body.series[0].total.p95).toBeLessThanOrEqual(22);
  });

  it('answers per device per hour', async () => {
    const res = await get(`/v1/telemetry?${range()}&bucket=hour&deviceId=d1`);
    expect(res.statusCode).toBe(200);
    const body = TelemetryResponse.parse(res.json());
    expect(body.series).toHaveLength(1);
    expect(body.series[0]).toMatchObject({ modelId: 'tiny', version: 1, manifestSha256: manifest });
    expect(body.series[0].points.map((p) => [p.t, p.count, p.errors])).toEqual([[new Date(start).toISOString(), 200, 2]]);
  });

  it('serves every metric the Grafana dashboard queries, with the fleet figures', async () => {
    await get('/v1/telemetry'); // one timed request at least
    const res = await get('/metrics');
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toContain('text/plain');
    const text = res.body;
    const dashboard = readFileSync(new URL('../../docs/grafana-dashboard.json', import.meta.url), 'utf8');
    const queried = [...new Set([...dashboard.matchAll(/\b(fleet_[a-z_]+)/g)].map((m) => m[1]))].sort();
    expect(queried.length).toBe(13);
    const typed = new Set([...text.matchAll(/^# TYPE (\S+) (\w+)$/gm)].flatMap((m) => m[2] === 'histogram' ? [m[1], `${m[1]}_bucket`] : [m[1]]));
    expect(queried.filter((n) => !typed.has(n))).toEqual([]);
    expect(text).toContain('fleet_devices_online{hardware="cam-a"} 1');
    expect(text).toContain('fleet_devices_online{hardware="cam-b"} 0');
    expect(text).toContain('fleet_telemetry_windows_total 3');
    expect(text).toContain('fleet_inferences_total{model_id="tiny",version="1"} 250');
    expect(text).toContain('fleet_inference_errors_total{model_id="tiny",version="1"} 7');
    expect(text).toContain('fleet_campaigns{state="running"} 0');
    expect(text).toMatch(/fleet_http_request_duration_seconds_count\{method="GET",route="\/v1\/telemetry",status_code="200"\} [1-9]/);
    expect(text).toMatch(/fleet_mqtt_connections 0/);
  });

  it('fleetctl telemetry prints one row per series, --points one per bucket, --json the API document, and a bad option names the field', async () => {
    const from = new Date(start).toISOString(), to = new Date(start + 3600_000).toISOString();
    const t = await runFleetctl(server.baseUrl, server.adminToken, 'telemetry', '--model', 'tiny', '--group-by', 'hardware', '--from', from, '--to', to);
    expect(t.stderr).toBe('');
    expect(t.code).toBe(0);
    const lines = t.stdout.trimEnd().split('\n');
    expect(lines[0]).toBe(`minute buckets from ${from} to ${to}; latency in ms`);
    expect(lines[1].split(/\s{2,}/)).toEqual(['MODEL', 'HARDWARE', 'INFERENCES', 'ERRORS', 'ERROR RATE', 'P50', 'P95', 'P99', 'WORST DRIFT (PSI)']);
    expect(lines.slice(2).map((l) => l.split(/\s{2,}/).slice(0, 5))).toEqual([['tiny v1', 'cam-a', '200', '2', '1.00%'], ['tiny v1', 'cam-b', '50', '5', '10.00%']]);
    expect(lines).toHaveLength(4);
    const points = await runFleetctl(server.baseUrl, server.adminToken, 'telemetry', '--model', 'tiny', '--from', from, '--to', to, '--points');
    expect(points.stdout.trimEnd().split('\n').slice(2).map((l) => l.split(/\s{2,}/).slice(0, 4))).toEqual([
      ['tiny v1', new Date(start).toISOString(), '100', '1'], ['tiny v1', new Date(start + 60_000).toISOString(), '150', '6'],
    ]);
    const json = await runFleetctl(server.baseUrl, server.adminToken, '--json', 'telemetry', '--device', 'd1', '--from', from, '--to', to);
    expect(json.code).toBe(0);
    const api = (await get(`/v1/telemetry?bucket=hour&deviceId=d1&from=${from}&to=${to}`)).json();
    expect(JSON.parse(json.stdout)).toEqual(api);
    const bad = await runFleetctl(server.baseUrl, server.adminToken, 'telemetry', '--bucket', 'day');
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain('query.bucket');
    const since = await runFleetctl(server.baseUrl, server.adminToken, 'telemetry', '--since', '7 days');
    expect(since.code).not.toBe(0);
    expect(since.stderr).toContain('--since 7 days: give a number and m, h or d');
  });

  it('serves /metrics without a token only when metricsAccess is public', async () => {
    const open = await startInjectServer({ metricsAccess: 'public' });
    try {
      const res = await open.app.inject({ method: 'GET', url: '/metrics', headers: { authorization: '' } });
      expect(res.statusCode).toBe(200);
      expect(res.body).toContain('# TYPE fleet_campaigns gauge');
      // the rest of the API still needs one
      expect((await open.app.inject({ method: 'GET', url: '/v1/telemetry', headers: { authorization: '' } })).statusCode).toBe(401);
    } finally {
      await open.close();
    }
  });

  // last: its devices and windows would change the fleet figures the tests above count
  it('[#19] perModel=true: a series per model of a set from its own figures, drift against its own baseline; a bad value is a 400', async () => {
    const kws = (await pushBundle(server, 'kws', tinyClassifier(4), { quantize: 'none' })).manifestSha256;
    const { db, ingest } = server.app.fleet;
    db.prepare("INSERT INTO devices (device_id, hardware, first_seen, last_seen, online) VALUES ('m1', 'cam-a', 'x', 'x', 1), ('m2', 'cam-b', 'x', 'x', 1)").run();
    const lat = (p: number) => ({ p50: p, p95: p * 2, p99: p * 3, max: p * 4 });
    const shifted = baseline.map((_, i) => baseline[(i + 1) % baseline.length]);
    // two devices running tiny (the primary, with a baseline) and kws; m2's kws errs on one call in ten
    for (const [deviceId, seq, p] of [['m1', 1, 1], ['m1', 2, 3], ['m2', 1, 2]] as const) {
      ingest.telemetry.add({
        ...win({ deviceId, seq, minute: seq, manifest, start: Date.now() - 600_000 }),
        models: {
          tiny: { version: 1, manifestSha256: manifest, count: 60, errors: 0, latencyMs: lat(p), inputHistograms: { x: { kind: 'values', edges: [], counts: shifted } } },
          kws: { version: 1, manifestSha256: kws, count: 40, errors: deviceId === 'm2' ? 4 : 0, latencyMs: lat(10 * p) },
        },
        chain: { count: 20, errors: 0, latencyMs: lat(20) },
      });
    }
    await ingest.telemetry.flush();
    const res = await get('/v1/telemetry?perModel=true&groupBy=hardware');
    expect(res.statusCode, res.body).toBe(200);
    const body = TelemetryResponse.parse(res.json());
    expect(body.perModel).toBe(true);
    // one series per model and hardware class; the chain is not a model
    expect(body.series.map((s) => [s.modelId, s.version, s.hardware, s.total.windows, s.total.count, s.total.errors, s.total.p50, s.total.p95, s.total.maxMs])).toEqual([
      ['kws', 1, 'cam-a', 2, 80, 0, 20, 40, 120],
      ['kws', 1, 'cam-b', 1, 40, 4, 20, 40, 80],
      ['tiny', 1, 'cam-a', 2, 120, 0, 2, 4, 12],
      ['tiny', 1, 'cam-b', 1, 60, 0, 2, 4, 8],
    ]);
    expect(body.series[1].total.errorRate).toBeCloseTo(0.1, 12);
    expect(body.series[0].total.drift).toEqual([]); // kws was pushed without samples: no baseline
    const summed = baseline.map((_, i) => 2 * baseline[(i + 1) % baseline.length]);
    expect(body.series[2].total.drift).toEqual([{ name: 'input:x', psi: Math.round(psi(baseline, summed) * 10_000) / 10_000, samples: summed.reduce((a, b) => a + b, 0) }]);
    // filters: one model, one device
    const one = TelemetryResponse.parse((await get('/v1/telemetry?perModel=true&modelId=kws&bucket=hour&deviceId=m2')).json());
    expect(one.series.map((s) => [s.modelId, s.total.count, s.total.errors, s.points.length])).toEqual([['kws', 40, 4, 1]]);
    // without perModel the same windows count under their primary model, as before
    const primary = TelemetryResponse.parse((await get('/v1/telemetry?modelId=kws')).json());
    expect(primary.series).toEqual([]);
    expect(primary.perModel).toBeUndefined();
    // fleetctl telemetry --per-model prints the same series
    const cli = await runFleetctl(server.baseUrl, server.adminToken, 'telemetry', '--per-model', '--model', 'kws', '--group-by', 'hardware');
    expect([cli.code, cli.stderr]).toEqual([0, '']);
    const lines = cli.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/; latency in ms \(per model of a set: medians of window percentiles\)$/);
    expect(lines.slice(2).map((l) => l.split(/\s{2,}/).slice(0, 8))).toEqual([['kws v1', 'cam-a', '80', '0', '0.00%', '20.00', '40.00', '60.00'], ['kws v1', 'cam-b', '40', '4', '10.00%', '20.00', '40.00', '60.00']]);
    const bad = await get('/v1/telemetry?perModel=yes');
    expect(bad.statusCode).toBe(400);
    expect(bad.json().message).toContain('query.perModel');
  });
});

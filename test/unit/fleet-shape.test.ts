// The fleet's shape as a pure function of device rows and telemetry rows (server/fleet/fleet-shape.ts),
// and the query/body schemas of /v1/fleet/shape (shared/api/fleet-shape.ts).
import { describe, expect, it } from 'vitest';
import { FleetShapeQuery, FleetShapeRequest } from '../../shared/api/fleet-shape.ts';
import { CampaignTarget } from '../../server/rollouts/campaign-config.ts';
import { classTelemetry, fleetShape, type ShapeDevice, type ShapeTelemetryRow } from '../../server/fleet/fleet-shape.ts';

const A = 'a'.repeat(64), B = 'b'.repeat(64);
const dev = (deviceId: string, hardware: string | null, o: Partial<ShapeDevice> = {}): ShapeDevice => ({
  deviceId, hardware, tags: [], online: true, activeManifestSha256: A, activeModelId: 'm', activeVersion: 1, ...o,
});
const row = (deviceId: string, o: Partial<ShapeTelemetryRow> = {}): ShapeTelemetryRow => ({
  deviceId, manifestSha256: A, count: 60, errors: 0, p50: 2, p95: 4, windowMs: 60_000, ...o,
});

describe('classTelemetry', () => {
  it.each([
    { name: 'no rows', rows: [], want: { reportingDevices: 0, inferences: 0, errors: 0, errorRate: 0, inferencesPerSecond: 0, latencyMs: null } },
    { name: 'one window, 1/s', rows: [row('d1')], want: { reportingDevices: 1, inferences: 60, errors: 0, errorRate: 0, inferencesPerSecond: 1, latencyMs: { p50: 2, p95: 4 } } },
    { name: 'rate over summed window time, errors counted', rows: [row('d1', { count: 120, errors: 6 }), row('d2', { count: 60, p50: 4, p95: 8 }), row('d2', { count: 60, p50: 6, p95: 10 })],
      want: { reportingDevices: 2, inferences: 240, errors: 6, errorRate: 0.025, inferencesPerSecond: 240 / 180, latencyMs: { p50: 4, p95: 8 } } },
    { name: 'rows of another model are not this model\'s figures', rows: [row('d1', { manifestSha256: B, p50: 100, p95: 200 }), row('d1')],
      want: { reportingDevices: 1, inferences: 60, errors: 0, errorRate: 0, inferencesPerSecond: 1, latencyMs: { p50: 2, p95: 4 } } },
    { name: 'rows with no model (idle) are left out', rows: [row('d1', { manifestSha256: null })], want: { reportingDevices: 0, inferences: 0, errors: 0, errorRate: 0, inferencesPerSecond: 0, latencyMs: null } },
    { name: 'all-error windows carry no latency', rows: [row('d1', { count: 10, errors: 10, p50: 0, p95: 0 })], want: { reportingDevices: 1, inferences: 10, errors: 10, errorRate: 1, inferencesPerSecond: 10 / 60, latencyMs: null } },
    { name: 'rows of devices outside the class are ignored', rows: [row('zz')], want: { reportingDevices: 0, inferences: 0, errors: 0, errorRate: 0, inferencesPerSecond: 0, latencyMs: null } },
  ])('$name', ({ rows, want }) => {
    expect(classTelemetry([dev('d1', 'x'), dev('d2', 'x')], rows)).toEqual(want);
  });
});

describe('fleetShape', () => {
  const window = { fromMs: Date.parse('2026-01-01T00:00:00Z'), toMs: Date.parse('2026-01-01T01:00:00Z') };

  it('counts classes, tag sets, online devices and current models, largest first', () => {
    const devices = [
      dev('a1', 'rpi4', { tags: ['eu'] }), dev('a2', 'rpi4', { tags: ['eu'], online: false }), dev('a3', 'rpi4', { tags: ['us'], activeManifestSha256: B, activeVersion: 2 }),
      dev('b1', 'jetson', { tags: ['gate', 'eu'] }), dev('b2', 'jetson', { tags: ['eu', 'gate'], online: false, activeManifestSha256: null, activeModelId: null, activeVersion: null }),
      dev('c1', null),
    ];
    const s = fleetShape({}, devices, [row('a1'), row('a3', { manifestSha256: B, p50: 3, p95: 5 })], window);
    expect(s.devices).toBe(6);
    expect(s.online).toBe(4);
    expect(s.onlineShare).toBeCloseTo(4 / 6);
    expect(s.window).toEqual({ from: '2026-01-01T00:00:00.000Z', to: '2026-01-01T01:00:00.000Z', seconds: 3600 });
    expect(s.classes.map((c) => [c.hardware, c.devices, c.online])).toEqual([['rpi4', 3, 2], ['jetson', 2, 1], [null, 1, 1]]);
    expect(s.classes[0].tagSets).toEqual([{ tags: ['eu'], devices: 2, online: 1 }, { tags: ['us'], devices: 1, online: 1 }]);
    expect(s.classes[1].tagSets).toEqual([{ tags: ['eu', 'gate'], devices: 2, online: 1 }]); // tag order does not split a set
    expect(s.classes[0].currentModels).toEqual([{ manifestSha256: A, modelId: 'm', version: 1, devices: 2 }, { manifestSha256: B, modelId: 'm', version: 2, devices: 1 }]);
    expect(s.classes[1].currentModels).toEqual([{ manifestSha256: A, modelId: 'm', version: 1, devices: 1 }, { manifestSha256: null, modelId: null, version: null, devices: 1 }]);
    // each device's rows on its own current model: a1 on A, a3 on B
    expect(s.classes[0].telemetry).toMatchObject({ reportingDevices: 2, inferences: 120, latencyMs: { p50: 2.5, p95: 4.5 } });
    expect(s.classes[1].telemetry.reportingDevices).toBe(0);
  });

  it('an empty target is an empty shape', () => {
    expect(fleetShape({ hardware: ['none'] }, [], [], window)).toMatchObject({ devices: 0, online: 0, onlineShare: 0, classes: [] });
  });
});

describe('the /v1/fleet/shape schemas', () => {
  it.each([
    ['', { target: {}, windowSeconds: 3600 }],
    ['hardware=rpi4,jetson&tags=eu&windowSeconds=600', { target: { hardware: ['rpi4', 'jetson'], tags: ['eu'] }, windowSeconds: 600 }],
    ['modelId=det&modelVersion=3&deviceIds=d1,d2', { target: { deviceIds: ['d1', 'd2'], currentModel: { modelId: 'det', version: 3 } }, windowSeconds: 3600 }],
  ])('query %s', (qs, want) => {
    expect(FleetShapeQuery.parse(Object.fromEntries(new URLSearchParams(qs)))).toEqual(want);
  });

  it.each([
    ['windowSeconds=5', 'windowSeconds'],
    ['windowSeconds=abc', 'windowSeconds'],
    ['modelVersion=2', 'modelVersion'],
    ['deviceIds=a/b', 'deviceIds.0'],
    ['colour=red', ''],
  ])('query %s is refused, naming "%s"', (qs, field) => {
    const r = FleetShapeQuery.safeParse(Object.fromEntries(new URLSearchParams(qs)));
    expect(r.success).toBe(false);
    expect(r.error!.issues[0].path.join('.')).toBe(field);
  });

  it('the body target takes exactly what a campaign target takes', () => {
    const targets = [{}, { tags: ['eu'] }, { deviceIds: ['d1'], hardware: ['x'], currentModel: { modelId: 'm', version: 2 } }, { currentModel: { modelId: 'm', extra: 1 } }, { tagz: [] }, { hardware: [''] }];
    for (const t of targets) expect(FleetShapeRequest.safeParse({ target: t }).success, JSON.stringify(t)).toBe(CampaignTarget.safeParse(t).success);
  });
});

// The fleet's shape from its records, as a pure function of device rows and telemetry rows (the route,
// server/routes/fleet-shape.ts, reads them from SQLite). Table-tested in test/unit/fleet-shape.test.ts.
import type { ClassTelemetry, FleetShape, HardwareClassShape, ShapeTarget } from '../../shared/api/fleet-shape.ts';

export interface ShapeDevice {
  deviceId: string;
  hardware: string | null;
  tags: string[];
  online: boolean;
  activeManifestSha256: string | null;
  activeModelId: string | null;
  activeVersion: number | null;
}

export interface ShapeTelemetryRow {
  deviceId: string;
  manifestSha256: string | null;
  count: number;
  errors: number;
  p50: number | null;
  p95: number | null;
  /** the window's length in milliseconds, as the device reported it (window end - start) */
  windowMs: number;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Telemetry of a class: only rows of the model each device runs now count (older models say nothing about today's latency). */
export function classTelemetry(devices: ShapeDevice[], rows: ShapeTelemetryRow[]): ClassTelemetry {
  const current = new Map(devices.map((d) => [d.deviceId, d.activeManifestSha256]));
  const mine = rows.filter((r) => current.has(r.deviceId) && r.manifestSha256 !== null && r.manifestSha256 === current.get(r.deviceId));
  const inferences = mine.reduce((a, r) => a + r.count, 0);
  const errors = mine.reduce((a, r) => a + r.errors, 0);
  const seconds = mine.reduce((a, r) => a + Math.max(0, r.windowMs), 0) / 1000;
  const timed = mine.filter((r) => r.count > r.errors && r.p50 !== null && r.p95 !== null);
  return {
    reportingDevices: new Set(mine.map((r) => r.deviceId)).size,
    inferences, errors,
    errorRate: inferences > 0 ? errors / inferences : 0,
    inferencesPerSecond: seconds > 0 ? inferences / seconds : 0,
    latencyMs: timed.length ? { p50: median(timed.map((r) => r.p50!)), p95: median(timed.map((r) => r.p95!)) } : null,
  };
}

/** Ties broken the same way on every host (localeCompare depends on the locale). */
const byCodePoint = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

function countBy<T>(items: T[], key: (t: T) => string): Map<string, T[]> {
  const m = new Map<string, T[]>();
  for (const t of items) {
    const k = key(t);
    const list = m.get(k);
    if (list) list.push(t); else m.set(k, [t]);
  }
  return m;
}

export function fleetShape(target: ShapeTarget, devices: ShapeDevice[], telemetry: ShapeTelemetryRow[], window: { fromMs: number; toMs: number }): FleetShape {
  const byClass = countBy(devices, (d) => JSON.stringify(d.hardware));
  const rowsByDevice = countBy(telemetry, (r) => r.deviceId);
  const classes: HardwareClassShape[] = [...byClass.values()].map((list) => {
    const tagSets = [...countBy(list, (d) => JSON.stringify([...d.tags].sort())).entries()]
      .map(([k, ds]) => ({ tags: JSON.parse(k) as string[], devices: ds.length, online: ds.filter((d) => d.online).length }))
      .sort((a, b) => b.devices - a.devices || byCodePoint(JSON.stringify(a.tags), JSON.stringify(b.tags)));
    const currentModels = [...countBy(list, (d) => d.activeManifestSha256 ?? '').values()]
      .map((ds) => ({ manifestSha256: ds[0].activeManifestSha256, modelId: ds[0].activeModelId, version: ds[0].activeVersion, devices: ds.length }))
      .sort((a, b) => b.devices - a.devices || Number(a.manifestSha256 === null) - Number(b.manifestSha256 === null) || byCodePoint(a.manifestSha256 ?? '', b.manifestSha256 ?? '')); // on a tie, 'no model' last
    return {
      hardware: list[0].hardware, devices: list.length, online: list.filter((d) => d.online).length, tagSets, currentModels,
      telemetry: classTelemetry(list, list.flatMap((d) => rowsByDevice.get(d.deviceId) ?? [])),
    };
  }).sort((a, b) => b.devices - a.devices || byCodePoint(a.hardware ?? '', b.hardware ?? ''));
  const online = devices.filter((d) => d.online).length;
  return {
    target,
    window: { from: new Date(window.fromMs).toISOString(), to: new Date(window.toMs).toISOString(), seconds: Math.round((window.toMs - window.fromMs) / 1000) },
    devices: devices.length, online, onlineShare: devices.length ? online / devices.length : 0, classes,
  };
}

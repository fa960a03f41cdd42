// Telemetry windows for tests: exact counts and latencies, one window per device per minute.
import type { Telemetry } from '../../shared/messages.ts';

export const T0 = Date.parse('2026-03-02T10:00:00.000Z'); // a whole hour

export function win(o: {
  deviceId: string; seq: number; minute: number; manifest: string; modelId?: string; version?: number;
  count?: number; errors?: number; p50?: number; p95?: number; p99?: number; max?: number; x?: number[]; start?: number;
}): Telemetry {
  const start = (o.start ?? T0) + o.minute * 60_000;
  return {
    deviceId: o.deviceId, seq: o.seq, windowStart: new Date(start).toISOString(), windowEnd: new Date(start + 60_000).toISOString(),
    active: { modelId: o.modelId ?? 'tiny', version: o.version ?? 1, manifestSha256: o.manifest },
    count: o.count ?? 100, errors: o.errors ?? 0,
    latencyMs: { p50: o.p50 ?? 10, p95: o.p95 ?? 20, p99: o.p99 ?? 30, max: o.max ?? 40 },
    rssBytes: 1_000_000,
    ...(o.x ? { inputHistograms: { x: { kind: 'values', edges: [], counts: o.x } } } : {}),
  };
}

export const sha = (c: string) => c.repeat(64).slice(0, 64);

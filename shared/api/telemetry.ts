// The telemetry query API (GET /v1/telemetry): figures per model version, optionally per hardware
// class and per device, in minute or hour buckets, read from the rollups (server/telemetry/).
import { z } from 'zod';
import { DeviceId, IsoTime, ModelId, Sha256Hex } from '../ids.ts';
import { defineRoute, errors, type RouteContract } from './contract.ts';

export const TelemetryBucket = z.enum(['minute', 'hour']);
export type TelemetryBucket = z.infer<typeof TelemetryBucket>;
export const TelemetryGroup = z.enum(['hardware', 'device']);
export type TelemetryGroup = z.infer<typeof TelemetryGroup>;

/** Most buckets one query may ask for (a week of minutes is 10,080). */
export const MAX_BUCKETS = 10_080;
export const BUCKET_SECONDS: Record<TelemetryBucket, number> = { minute: 60, hour: 3600 };

export const TelemetryQuery = z.object({
  /** start of the range (ISO 8601); default: an hour (minute buckets) or a day (hour buckets) before `to` */
  from: IsoTime.optional(),
  /** end of the range, exclusive; default: now */
  to: IsoTime.optional(),
  bucket: TelemetryBucket.default('minute'),
  /** series are always per model version; add hardware class and/or device (comma-separated) */
  groupBy: z.string().max(32).optional()
    .transform((s, ctx) => {
      const parts = s ? s.split(',').map((p) => p.trim()).filter(Boolean) : [];
      const out: TelemetryGroup[] = [];
      for (const p of parts) {
        const g = TelemetryGroup.safeParse(p);
        if (!g.success) { ctx.addIssue({ code: 'custom', message: `groupBy: "${p}" is not one of hardware, device` }); return z.NEVER; }
        if (!out.includes(g.data)) out.push(g.data);
      }
      return out;
    }),
  modelId: ModelId.optional(),
  version: z.coerce.number().int().positive().optional(),
  hardware: z.string().min(1).max(64).optional(),
  deviceId: DeviceId.optional(),
  /**
   * [#19] true: a series for every model of devices running several models (each model of a set on its own,
   * read from its per-model figures, raw rows kept `rawHours`) instead of the windows' primary model
   */
  perModel: z.enum(['true', 'false']).optional().transform((v) => v === 'true'),
}).strict()
  .refine((q) => q.bucket === 'hour' || (!q.deviceId && !q.groupBy.includes('device')), {
    message: 'per-device figures are kept per hour: use bucket=hour with deviceId or groupBy=device', path: ['bucket'],
  })
  .refine((q) => q.version === undefined || q.modelId !== undefined, { message: 'version needs modelId', path: ['version'] });
export type TelemetryQuery = z.infer<typeof TelemetryQuery>;

export const DriftFigure = z.object({
  /** input:<name> or output:<name>, as in the bundle's drift baseline */
  name: z.string(),
  psi: z.number(),
  /** observations summed into the histogram */
  samples: z.number(),
});

export const TelemetryFigures = z.object({
  windows: z.number().int(),
  count: z.number().int(),
  errors: z.number().int(),
  /** errors / count; null with no inferences */
  errorRate: z.number().nullable(),
  /** milliseconds, from the merged latency histogram (docs/observability.md); null with no successful inference */
  p50: z.number().nullable(),
  p95: z.number().nullable(),
  p99: z.number().nullable(),
  maxMs: z.number().nullable(),
  /** PSI of each input and output against the bundle's baseline; empty if the bundle has none */
  drift: z.array(DriftFigure),
});
export type TelemetryFigures = z.infer<typeof TelemetryFigures>;

export const TelemetryPoint = TelemetryFigures.extend({ t: IsoTime });
export type TelemetryPoint = z.infer<typeof TelemetryPoint>;

export const TelemetrySeries = z.object({
  modelId: ModelId,
  version: z.number().int(),
  manifestSha256: Sha256Hex,
  /** present when grouped by hardware (null: a device that never said) */
  hardware: z.string().nullable().optional(),
  /** present when grouped by device */
  deviceId: DeviceId.optional(),
  /** the whole range at once */
  total: TelemetryFigures,
  /** one per bucket that has data, oldest first */
  points: z.array(TelemetryPoint),
});
export type TelemetrySeries = z.infer<typeof TelemetrySeries>;

export const TelemetryResponse = z.object({
  from: IsoTime,
  to: IsoTime,
  bucket: TelemetryBucket,
  groupBy: z.array(TelemetryGroup),
  /** [#19] present (true) when the series are per model of a set (perModel=true): latency figures are then medians of the windows' percentiles */
  perModel: z.boolean().optional(),
  series: z.array(TelemetrySeries),
});
export type TelemetryResponse = z.infer<typeof TelemetryResponse>;

export const telemetryContract = {
  query: defineRoute({
    method: 'GET', path: '/v1/telemetry', tags: ['telemetry'], access: 'viewer',
    summary: 'Inference count, error rate, p50/p95/p99 latency and drift (PSI) per model version, hardware class, device and time bucket',
    query: TelemetryQuery,
    responses: { 200: TelemetryResponse, ...errors(400, 401) },
  }),
  metrics: defineRoute({
    method: 'GET', path: '/metrics', tags: ['telemetry'],
    summary: 'Prometheus metrics (text format): devices online by hardware, installs and refusals, campaigns, ingest, broker, HTTP, fleet inference latency and errors per model version; a viewer token unless metricsAccess is "public"',
    produces: 'text/plain', responses: { 200: z.string(), ...errors(401) },
  }),
} satisfies Record<string, RouteContract>;

export const telemetryRoutes: RouteContract[] = Object.values(telemetryContract);

// The fleet's shape as the server's own records tell it (GET/POST /v1/fleet/shape): devices per
// hardware class, their tags, how many are online, and from recent telemetry the inference rate,
// latency on the model each device runs now, and error rate. `fleetctl campaigns rehearse` builds a
// simulated twin of the fleet from it (firmware-sim/twin.ts).
import { z } from 'zod';
import { DeviceId, IsoTime, ModelId, Sha256Hex } from '../ids.ts';
import { CampaignTarget } from './campaigns.ts';
import { defineRoute, errors, type RouteContract } from './contract.ts';

/** The devices a campaign would target: a campaign's own `target` schema (server/rollouts/campaign-config.ts). */
export const ShapeTarget = CampaignTarget;
export type ShapeTarget = z.infer<typeof ShapeTarget>;

export const DEFAULT_SHAPE_WINDOW_SECONDS = 3600;
const WindowSeconds = z.number().int().min(10, 'windowSeconds: at least 10 s').max(30 * 86_400, 'windowSeconds: at most 30 days');

/** POST body: a campaign's target as it is written in the campaign file, and the telemetry window. */
export const FleetShapeRequest = z.object({
  target: ShapeTarget.default({}),
  windowSeconds: WindowSeconds.default(DEFAULT_SHAPE_WINDOW_SECONDS),
}).strict();
export type FleetShapeRequest = z.infer<typeof FleetShapeRequest>;

const list = (max: number, item: z.ZodString) => z.string().max(64 * max + max)
  .transform((s) => s.split(',').map((x) => x.trim()).filter((x) => x.length > 0))
  .pipe(z.array(item).min(1).max(max));

/**
 * GET query: comma-separated lists (`?hardware=rpi4,jetson&tags=eu`), `modelId` (+ `modelVersion`) for
 * currentModel, `windowSeconds`. Long device lists belong in the POST body.
 */
export const FleetShapeQuery = z.object({
  deviceIds: list(1000, DeviceId).optional(),
  tags: list(32, z.string().min(1).max(64)).optional(),
  hardware: list(64, z.string().min(1).max(64)).optional(),
  modelId: ModelId.optional(),
  modelVersion: z.coerce.number().int().positive().optional(),
  windowSeconds: z.coerce.number().pipe(WindowSeconds).default(DEFAULT_SHAPE_WINDOW_SECONDS),
}).strict().refine((q) => q.modelVersion === undefined || q.modelId !== undefined, { path: ['modelVersion'], message: 'modelVersion needs modelId' })
  .transform((q): FleetShapeRequest => ({
    target: {
      ...(q.deviceIds ? { deviceIds: q.deviceIds } : {}), ...(q.tags ? { tags: q.tags } : {}), ...(q.hardware ? { hardware: q.hardware } : {}),
      ...(q.modelId ? { currentModel: { modelId: q.modelId, ...(q.modelVersion ? { version: q.modelVersion } : {}) } } : {}),
    },
    windowSeconds: q.windowSeconds,
  }));

/** Telemetry of one class over the window, on the model each device runs now (rows of other models are left out). */
export const ClassTelemetry = z.object({
  /** devices with at least one telemetry window on their current model */
  reportingDevices: z.number().int().nonnegative(),
  inferences: z.number().int().nonnegative(),
  errors: z.number().int().nonnegative(),
  /** errors / inferences (0 with no inferences) */
  errorRate: z.number().min(0).max(1),
  /** inferences per second of a reporting device: inferences over the summed length of their windows */
  inferencesPerSecond: z.number().nonnegative(),
  /** medians over the windows (with at least one good inference) of each window's p50 and p95; null with none */
  latencyMs: z.object({ p50: z.number().nonnegative(), p95: z.number().nonnegative() }).strict().nullable(),
}).strict();
export type ClassTelemetry = z.infer<typeof ClassTelemetry>;

export const HardwareClassShape = z.object({
  /** null: devices that never said */
  hardware: z.string().nullable(),
  devices: z.number().int().positive(),
  online: z.number().int().nonnegative(),
  /** devices per distinct tag set, largest first */
  tagSets: z.array(z.object({ tags: z.array(z.string()), devices: z.number().int().positive(), online: z.number().int().nonnegative() }).strict()),
  /** what the class runs now, most devices first (manifestSha256 null: no model) */
  currentModels: z.array(z.object({ manifestSha256: Sha256Hex.nullable(), modelId: z.string().nullable(), version: z.number().int().nullable(), devices: z.number().int().positive() }).strict()),
  telemetry: ClassTelemetry,
}).strict();
export type HardwareClassShape = z.infer<typeof HardwareClassShape>;

export const FleetShape = z.object({
  target: ShapeTarget,
  window: z.object({ from: IsoTime, to: IsoTime, seconds: z.number().int().positive() }).strict(),
  devices: z.number().int().nonnegative(),
  online: z.number().int().nonnegative(),
  /** online / devices (0 with no devices) */
  onlineShare: z.number().min(0).max(1),
  /** largest class first */
  classes: z.array(HardwareClassShape),
}).strict();
export type FleetShape = z.infer<typeof FleetShape>;

export const fleetShapeContract = {
  query: defineRoute({
    method: 'GET', path: '/v1/fleet/shape', tags: ['fleet'], access: 'viewer',
    summary: 'the fleet a campaign target matches, from the server\'s records: devices and online share per hardware class, tag sets, current models, recent telemetry (what `fleetctl campaigns rehearse` builds its twin from)',
    query: FleetShapeQuery, responses: { 200: FleetShape, ...errors(400, 401) },
  }),
  post: defineRoute({
    method: 'POST', path: '/v1/fleet/shape', tags: ['fleet'], access: 'viewer',
    summary: 'the same, for a campaign `target` sent as JSON (long device lists); read-only',
    body: FleetShapeRequest, responses: { 200: FleetShape, ...errors(400, 401) },
  }),
} satisfies Record<string, RouteContract>;

export const fleetShapeRoutes: RouteContract[] = Object.values(fleetShapeContract);

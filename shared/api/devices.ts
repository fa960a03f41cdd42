// Devices as the server knows them, and direct assignments of a bundle to devices.
import { z } from 'zod';
import { DeviceId, Sha256Hex } from '../ids.ts';
import { DeviceParams } from './access.ts';
import { defineRoute, errors, type RouteContract } from './contract.ts';

const Time = z.string().meta({ description: 'ISO 8601 time' });

export const DeviceView = z.object({
  deviceId: z.string(), hardware: z.string().nullable(), tags: z.array(z.string()), agentVersion: z.string().nullable(), online: z.boolean(),
  firstSeen: Time, lastSeen: Time,
  active: z.object({ modelId: z.string(), version: z.number().int().nullable(), manifestSha256: z.string().nullable() }).nullable()
    .meta({ description: 'a model the server assigned to this device and the device reports running' }),
  claimedActive: z.looseObject({ unverified: z.literal(true) }).nullable().meta({ description: 'what the device reports running that the server never assigned to it (its word only)' }),
  freshness: z.object({ stale: z.boolean(), freshUntil: Time.nullable() }).nullable(),
  lastStatus: z.object({ state: z.string(), reason: z.string().nullable(), detail: z.string().nullable(), at: Time.nullable() }).nullable(),
  desired: z.object({ manifestSha256: z.string(), seq: z.number().int() }).nullable(),
  models: z.array(z.object({ modelId: z.string(), version: z.number().int().nullable(), manifestSha256: z.string().nullable(), unverified: z.literal(true).optional() }))
    .meta({ description: 'every model the device runs, the primary first (one on a single-model device; unverified: reported but never assigned to it)' }),
  release: z.object({ name: z.string(), version: z.number().int() }).nullable().meta({ description: 'the release the device runs, if its models are one' }),
}).meta({ id: 'Device' });
export type DeviceView = z.infer<typeof DeviceView>;

/** [#19] one model's (or the chain's) telemetry summed over a span: latency percentiles are the median of its windows' */
const ModelFigures = z.object({
  windows: z.number().int(), count: z.number().int(), errors: z.number().int(),
  p50: z.number().nullable(), p95: z.number().nullable(), p99: z.number().nullable(), maxMs: z.number().nullable(),
});

export const DeviceDetail = DeviceView.extend({
  assignment: z.object({
    manifestSha256: z.string(), seq: z.number().int(), attempts: z.number().int(), maxAttempts: z.number().int(), state: z.string(), reason: z.string().nullable(), updatedAt: Time,
  }).nullable(),
  campaign: z.object({
    campaignId: z.string(), campaignStatus: z.string(), wave: z.number().int(), state: z.string(), attempts: z.number().int(), maxRetries: z.number().int(),
    assignedSeq: z.number().int().nullable(), reason: z.string().nullable(), revertState: z.string().nullable(),
  }).nullable(),
  events: z.array(z.object({ ts: Time, state: z.string(), reason: z.string().nullable(), detail: z.string().nullable(), directorSeq: z.number().int().nullable(), manifestSha256: z.string().nullable(), seq: z.number().int().nullable() })),
  modelTelemetry: z.object({
    windowSeconds: z.number().int(),
    models: z.array(ModelFigures.extend({ modelId: z.string(), manifestSha256: z.string() })),
    chain: ModelFigures.nullable(),
  }).optional().meta({ description: 'a device running several models (issue 19): each model\'s telemetry over the last hour (per manifest it ran), and its chain\'s; absent on a single-model device' }),
  // shadow mode (issue 17)
  shadow: z.object({
    modelId: z.string().nullable(), version: z.number().int().nullable(), manifestSha256: z.string(), sampleRate: z.number().nullable(),
    state: z.enum(['assigned', 'loaded', 'failed', 'unloaded']), reason: z.string().nullable(), detail: z.string().nullable(), since: Time.nullable(),
    samples: z.number().int(), errors: z.number().int(), dropped: z.number().int(), agreement: z.number().nullable(), latencyRatio: z.number().nullable(),
  }).nullable().optional().meta({ description: 'the candidate the device holds in shadow (docs/agent.md "Shadow mode"): assigned (named in its desired state, no word yet), loaded, failed (reason: SHADOW_MEMORY, ...) or unloaded; since it was loaded: inputs compared, candidate errors, dropped inputs, top-1 agreement and latency ratio (candidate / active) so far; null when it holds none' }),
});
export type DeviceDetail = z.infer<typeof DeviceDetail>;

export const DeviceListQuery = z.object({
  hardware: z.string().max(64).optional(),
  limit: z.coerce.number().int().min(1).max(100_000).default(1000),
}).strict();

export const AssignRequest = z.object({
  manifestSha256: Sha256Hex,
  deviceIds: z.array(DeviceId).min(1).max(100_000).optional(),
  /** every known device (optionally only those of one hardware class) */
  all: z.literal(true).optional(),
  hardware: z.string().min(1).max(64).optional(),
}).strict().refine((b) => (b.deviceIds ? !b.all : b.all), { message: 'give either deviceIds or all: true' });

const tags = ['devices'];
export const devicesContract = {
  listDevices: defineRoute({
    method: 'GET', path: '/v1/devices', summary: 'devices with their active and desired models', tags,
    query: DeviceListQuery, responses: { 200: z.object({ devices: z.array(DeviceView) }), ...errors(400, 401, 403) },
  }),
  getDevice: defineRoute({
    method: 'GET', path: '/v1/devices/:deviceId', summary: 'one device: its assignment, its place in a campaign, its 50 latest status events', tags,
    params: DeviceParams, responses: { 200: DeviceDetail, ...errors(400, 401, 403, 404) },
  }),
  assign: defineRoute({
    method: 'POST', path: '/v1/assignments', summary: 'point devices at a bundle (a signed desired state per device)', tags,
    body: AssignRequest,
    responses: { 202: z.object({ manifestSha256: z.string(), assigned: z.number().int(), devices: z.array(z.looseObject({ deviceId: z.string() })) }), ...errors(400, 401, 403, 404, 409) },
  }),
} satisfies Record<string, RouteContract>;

export const devicesRoutes: RouteContract[] = Object.values(devicesContract);

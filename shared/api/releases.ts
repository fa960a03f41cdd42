// Releases (issue 19): a named, versioned set of bundles that devices switch to as one, optionally with a
// chain (a pipeline the device runs in one call). Each POST makes the next version of the name; a version
// never changes. Assigning a release sends each device one signed desired state naming every model.
import { z } from 'zod';
import { DeviceId, ModelId } from '../ids.ts';
import { Chain, TensorJson } from '../messages.ts';
import { defineRoute, errors, type RouteContract } from './contract.ts';

const Time = z.string().meta({ description: 'ISO 8601 time' });

export const ReleaseRequest = z.object({
  name: ModelId,
  /** the models, in order: the first is the primary (what infer(feeds) without a model id serves) */
  models: z.array(z.object({
    modelId: ModelId,
    version: z.number().int().positive().optional().meta({ description: 'a bundle version; the latest if omitted' }),
  }).strict()).min(1).max(16),
  chain: z.object({
    steps: Chain.shape.steps,
    /** chain inputs; the server runs the exact artifacts on them to make the chain's golden vectors */
    samples: z.array(z.object({ inputs: z.record(z.string(), TensorJson) }).strict()).min(1).max(8).optional(),
    atol: z.number().nonnegative().default(1e-4),
    rtol: z.number().nonnegative().default(1e-3),
  }).strict().optional(),
}).strict().refine((r) => new Set(r.models.map((m) => m.modelId)).size === r.models.length, { message: 'a release names each model once', path: ['models'] })
  .meta({ id: 'ReleaseRequest' });
export type ReleaseRequest = z.input<typeof ReleaseRequest>;

export const ReleaseView = z.object({
  name: z.string(), version: z.number().int(),
  models: z.array(z.object({ modelId: z.string(), version: z.number().int(), manifestSha256: z.string() })),
  chain: z.object({ steps: Chain.shape.steps, goldenVectors: z.number().int() }).nullable(),
  createdBy: z.string(), createdAt: Time,
}).meta({ id: 'Release' });
export type ReleaseView = z.infer<typeof ReleaseView>;

export const ReleaseParams = z.object({ name: ModelId }).strict();

export const ReleaseAssignRequest = z.object({
  version: z.number().int().positive().optional().meta({ description: 'the latest if omitted' }),
  deviceIds: z.array(DeviceId).min(1).max(100_000).optional(),
  all: z.literal(true).optional(),
  hardware: z.string().min(1).max(64).optional(),
}).strict().refine((b) => (b.deviceIds ? !b.all : b.all), { message: 'give either deviceIds or all: true' });

const tags = ['releases'];
export const releasesContract = {
  createRelease: defineRoute({
    method: 'POST', path: '/v1/releases', summary: 'make the next version of a release from bundles (and a chain)', tags,
    body: ReleaseRequest, responses: { 201: ReleaseView, ...errors(400, 401, 403, 404, 409, 422) },
  }),
  listReleases: defineRoute({
    method: 'GET', path: '/v1/releases', summary: 'every release, each version', tags,
    responses: { 200: z.object({ releases: z.array(ReleaseView) }), ...errors(401, 403) },
  }),
  getRelease: defineRoute({
    method: 'GET', path: '/v1/releases/:name', summary: 'one release, its versions newest first', tags,
    params: ReleaseParams, responses: { 200: z.object({ name: z.string(), versions: z.array(ReleaseView) }), ...errors(400, 401, 403, 404) },
  }),
  assignRelease: defineRoute({
    method: 'POST', path: '/v1/releases/:name/assignments', summary: 'point devices at a release: one signed desired state per device naming all its models', tags,
    params: ReleaseParams, body: ReleaseAssignRequest,
    responses: { 202: z.object({ release: z.object({ name: z.string(), version: z.number().int() }), assigned: z.number().int(), devices: z.array(z.looseObject({ deviceId: z.string() })) }), ...errors(400, 401, 403, 404, 409) },
  }),
} satisfies Record<string, RouteContract>;

export const releasesRoutes: RouteContract[] = Object.values(releasesContract);

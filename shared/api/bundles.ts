// Models, uploads, signed bundles and their artifacts.
import { z } from 'zod';
import { ModelId, Sha256Hex } from '../ids.ts';
import { BundleRequest } from './bundle-request.ts';
import { defineRoute, errors, type RouteContract } from './contract.ts';

export const ShaParams = z.object({ sha256: Sha256Hex }).strict();
export const ModelParams = z.object({ modelId: ModelId }).strict();
const Time = z.string().meta({ description: 'ISO 8601 time' });
const Json = z.record(z.string(), z.unknown());

export const BundleView = z.object({
  manifestSha256: z.string(), modelId: z.string(), version: z.number().int(), artifactSha256: z.string(), artifactBytes: z.number().int(),
  quantization: z.string(), hardwareTargets: z.array(z.string()), keyId: z.string(), createdAt: Time, expires: Time,
}).meta({ id: 'Bundle' });
export type BundleView = z.infer<typeof BundleView>;
export const BundleDetail = BundleView.extend({
  envelope: z.object({ signed: z.string(), keyId: z.string(), sig: z.string() }).meta({ description: 'the signed manifest as devices get it' }),
  manifest: Json, report: Json,
});
export type BundleDetail = z.infer<typeof BundleDetail>;
export const BundleCreated = z.object({
  manifestSha256: z.string(), modelId: z.string(), version: z.number().int(),
  manifest: z.looseObject({ quantization: z.looseObject({ scheme: z.string() }), artifact: z.looseObject({ sha256: z.string(), length: z.number() }) }),
  report: z.looseObject({ floatBytes: z.number(), artifactBytes: z.number(), shippedFloat: z.boolean() }).meta({ description: 'quantization, gate figures, health-check vectors' }),
});
export const Upload = z.object({ sha256: z.string(), length: z.number().int(), info: Json });
export const ModelView = z.object({
  modelId: z.string(), latestVersion: z.number().int(), bundles: z.number().int(), createdAt: Time,
  devices: z.number().int().meta({ description: 'devices running a version of this model, alone or as one model of a set (issue 19), as the server verified it (claims of models it did not assign are not counted)' }),
}).meta({ id: 'Model' });

const tags = ['bundles'];
export const bundlesContract = {
  upload: defineRoute({
    method: 'POST', path: '/v1/uploads', summary: 'upload a float ONNX model (raw bytes, application/octet-stream); it is inspected and load-checked before it is kept', tags,
    body: 'binary', responses: { 201: Upload, ...errors(400, 401, 403, 413, 415, 422) },
  }),
  getUpload: defineRoute({
    method: 'GET', path: '/v1/uploads/:sha256', summary: 'an upload and what inspecting it found (inputs, outputs, opset)', tags,
    params: ShaParams, responses: { 200: Upload.extend({ createdAt: Time }), ...errors(400, 401, 403, 404) },
  }),
  createBundle: defineRoute({
    method: 'POST', path: '/v1/models/:modelId/bundles', summary: 'build a signed bundle from an upload (INT8 behind the accuracy gate, health-check vectors, drift baseline)', tags,
    params: ModelParams, body: BundleRequest, responses: { 201: BundleCreated, ...errors(400, 401, 403, 404, 413, 422) },
  }),
  resignBundle: defineRoute({
    method: 'POST', path: '/v1/bundles/:sha256/resign', summary: "a new version of a bundle signed by the current targets key (for bundles whose key was revoked)", tags,
    params: ShaParams,
    responses: { 201: z.object({ manifestSha256: z.string(), modelId: z.string(), version: z.number().int(), fromManifestSha256: z.string(), fromVersion: z.number().int(), keyId: z.string() }), ...errors(400, 401, 403, 404) },
  }),
  listModels: defineRoute({ method: 'GET', path: '/v1/models', summary: 'models and their latest versions', tags, responses: { 200: z.object({ models: z.array(ModelView) }), ...errors(401, 403) } }),
  listModelBundles: defineRoute({
    method: 'GET', path: '/v1/models/:modelId/bundles', summary: "a model's bundles, newest version first", tags,
    params: ModelParams, responses: { 200: z.object({ bundles: z.array(BundleView) }), ...errors(400, 401, 403) },
  }),
  listBundles: defineRoute({ method: 'GET', path: '/v1/bundles', summary: 'the 500 newest bundles', tags, responses: { 200: z.object({ bundles: z.array(BundleView) }), ...errors(401, 403) } }),
  getBundle: defineRoute({
    method: 'GET', path: '/v1/bundles/:sha256', summary: 'one bundle with its signed envelope, manifest and build report', tags,
    params: ShaParams, responses: { 200: BundleDetail, ...errors(400, 401, 403, 404) },
  }),
  getArtifact: defineRoute({
    method: 'GET', path: '/v1/artifacts/:sha256', description: 'HEAD is served too. HTTP Range (one range) resumes broken downloads: 206 with content-range.',
    summary: 'artifact bytes by SHA-256 (a device gets only artifacts assigned to it)', tags, access: 'artifact',
    params: ShaParams, produces: 'application/octet-stream',
    responses: { 200: z.string().meta({ format: 'binary' }), 206: z.string().meta({ format: 'binary' }), ...errors(400, 401, 403, 404, 416) },
  }),
} satisfies Record<string, RouteContract>;

export const bundlesRoutes: RouteContract[] = Object.values(bundlesContract);

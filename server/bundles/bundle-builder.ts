// Turn an uploaded float model into a signed bundle: quantize (with the accuracy gate), compute the
// health-check vectors on the exact artifact that ships, write the manifest and sign it.
import { z } from 'zod';
import { envelopeDigest, signDocument } from '../../shared/envelope.ts';
import { Sha256Hex } from '../../shared/ids.ts';
import { TensorJson, type Envelope, type IoSpec, type Manifest } from '../../shared/messages.ts';
import { ONNXRUNTIME_WEB_RANGE, AGENT_VERSION } from '../../shared/version.ts';
import type { Db } from '../db/database.ts';
import { AppError } from '../errors.ts';
import type { KeyStore } from '../keys/key-store.ts';
import { GateThresholds, runAccuracyGate, type GateResult } from '../quantize/accuracy-gate.ts';
import { QUANTIZED_SESSION_CONFIG, quantizeModel } from '../quantize/quantize.ts';
import type { BlobStore } from './blob-store.ts';
import { computeDriftBaseline } from './drift-baseline.ts';
import { computeGoldenVectors, makeGoldenInputs } from './golden-vectors.ts';
import { decodeReferenceTensor, referenceToGateSet } from './reference-set.ts';

export const ReferenceSet = z.object({
  /** batched inputs: the first dimension of every tensor is the sample index */
  inputs: z.record(z.string(), TensorJson),
  labels: z.array(z.number().int().nonnegative()).optional(),
}).strict();
export type ReferenceSet = z.infer<typeof ReferenceSet>;

export const BundleRequest = z.object({
  uploadSha256: Sha256Hex,
  quantize: z.enum(['int8', 'none']).default('int8'),
  /** ship the float model when the quantized one fails its gate, instead of refusing the push */
  allowFloatFallback: z.boolean().default(false),
  gate: GateThresholds.partial().optional(),
  reference: ReferenceSet.optional(),
  hardwareTargets: z.array(z.string().min(1).max(64)).max(64).default([]),
  healthCheck: z.object({
    vectors: z.number().int().min(1).max(16).default(4),
    atol: z.number().nonnegative().default(1e-4),
    rtol: z.number().nonnegative().default(1e-3),
    latencyBudgetMs: z.number().positive().optional(),
  }).strict().default({ vectors: 4, atol: 1e-4, rtol: 1e-3 }),
  expiresInDays: z.number().int().min(1).max(3650).optional(),
  lineage: z.object({
    owner: z.string().max(128).optional(),
    trainingDataSha256: Sha256Hex.optional(),
    metrics: z.record(z.string(), z.number()).optional(),
  }).strict().optional(),
}).strict();
export type BundleRequest = z.input<typeof BundleRequest>;

export interface BundleRecord {
  manifestSha256: string;
  modelId: string;
  version: number;
  manifest: Manifest;
  envelope: Envelope;
  report: BundleReport;
}

export interface BundleReport {
  floatBytes: number;
  artifactBytes: number;
  quantization: unknown;
  gate: GateResult | null;
  shippedFloat: boolean;
  serverMedianMs: number;
}

export interface BundleDeps { db: Db; blobs: BlobStore; keys: KeyStore; manifestTtlDays: number }

export async function buildBundle(deps: BundleDeps, modelId: string, input: BundleRequest): Promise<BundleRecord> {
  const req = BundleRequest.parse(input);
  const upload = deps.db.prepare('SELECT info_json FROM uploads WHERE sha256 = ?').get(req.uploadSha256) as { info_json: string } | undefined;
  if (!upload || !deps.blobs.has(req.uploadSha256)) throw new AppError('FLEET_ERR_UPLOAD_NOT_FOUND', `no uploaded model ${req.uploadSha256}: POST /v1/uploads first`, 404);
  const info = JSON.parse(upload.info_json) as { inputs: IoSpec[]; outputs: IoSpec[] };
  const floatBytes = deps.blobs.get(req.uploadSha256);
  if (req.reference) checkReference(req.reference, info.inputs);

  let artifact = floatBytes;
  let sessionConfig: Record<string, string> = {};
  let quantization: Manifest['quantization'] = { scheme: 'none', perChannel: false, sessionConfig: {}, quantizedOps: 0, skippedOps: 0 };
  let quantReport: unknown = null;
  let gate: GateResult | null = null;
  let shippedFloat = req.quantize === 'none';

  if (req.quantize === 'int8') {
    if (!req.reference) throw new AppError('FLEET_ERR_REFERENCE_REQUIRED', 'int8 quantization needs a reference set for its accuracy gate: send reference, or quantize: "none"', 422);
    const q = await quantizeModel(floatBytes);
    quantReport = q.report;
    const gateSet = referenceToGateSet(req.reference, info.outputs);
    gate = await runAccuracyGate(floatBytes, q.bytes, gateSet.reference, req.gate, gateSet.opts);
    if (gate.passed && q.report.quantized.length > 0) {
      artifact = q.bytes;
      sessionConfig = { ...QUANTIZED_SESSION_CONFIG };
      quantization = {
        scheme: 'int8-weight-symmetric', perChannel: q.report.quantized.some((o: { perChannel: boolean }) => o.perChannel), sessionConfig,
        floatSha256: req.uploadSha256, quantizedOps: q.report.quantized.length, skippedOps: q.report.skipped.length,
      };
    } else if (!gate.passed && !req.allowFloatFallback) {
      throw new AppError('FLEET_ERR_GATE_FAILED', `quantized model failed its accuracy gate: ${gate.failures.join('; ')}`, 422, { gate });
    } else {
      shippedFloat = true;
    }
  }

  const goldenInputs = makeGoldenInputs(info.inputs, req.reference?.inputs, req.healthCheck.vectors);
  const golden = await computeGoldenVectors(artifact, sessionConfig, goldenInputs);
  const driftBaseline = req.reference ? await computeDriftBaseline(artifact, sessionConfig, req.reference.inputs) : undefined;
  const stored = deps.blobs.put(artifact);

  const now = new Date();
  const signer = deps.keys.signerFor('targets');
  // Synchronous from here on: the version is taken and the row written in one transaction.
  return deps.db.transaction((): BundleRecord => {
    deps.db.prepare('INSERT OR IGNORE INTO models (model_id, latest_version, created_at) VALUES (?, 0, ?)').run(modelId, now.toISOString());
    const prev = deps.db.prepare('SELECT latest_version FROM models WHERE model_id = ?').get(modelId) as { latest_version: number };
    const version = prev.latest_version + 1;
    const manifest: Manifest = {
      type: 'manifest',
      modelId,
      version,
      artifact: { sha256: stored.sha256, length: stored.length, format: 'onnx' },
      quantization,
      io: { inputs: info.inputs, outputs: info.outputs },
      runtime: { onnxruntimeWeb: ONNXRUNTIME_WEB_RANGE, minAgentVersion: AGENT_VERSION },
      hardwareTargets: req.hardwareTargets,
      healthCheck: {
        vectors: golden.vectors,
        atol: req.healthCheck.atol,
        rtol: req.healthCheck.rtol,
        latencyBudgetMs: req.healthCheck.latencyBudgetMs ?? Math.max(250, Math.ceil(golden.medianMs * 20)),
      },
      ...(driftBaseline ? { driftBaseline } : {}),
      lineage: {
        ...(prev.latest_version > 0 ? { parentVersion: prev.latest_version } : {}),
        ...req.lineage,
        ...(gate ? { metrics: gateMetrics(gate, req.lineage?.metrics) } : {}),
      },
      issuedAt: now.toISOString(),
      expires: new Date(now.getTime() + (req.expiresInDays ?? deps.manifestTtlDays) * 86400_000).toISOString(),
    };
    const envelope = signDocument(manifest, signer);
    const manifestSha256 = envelopeDigest(envelope);
    const report: BundleReport = { floatBytes: floatBytes.byteLength, artifactBytes: stored.length, quantization: quantReport, gate, shippedFloat, serverMedianMs: golden.medianMs };
    deps.db.prepare('INSERT OR IGNORE INTO artifacts (sha256, length, created_at) VALUES (?, ?, ?)').run(stored.sha256, stored.length, now.toISOString());
    deps.db.prepare('INSERT INTO bundles (manifest_sha256, model_id, version, artifact_sha256, envelope_json, report_json, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)')
      .run(manifestSha256, modelId, version, stored.sha256, JSON.stringify(envelope), JSON.stringify(report), now.toISOString());
    deps.db.prepare('UPDATE models SET latest_version = ? WHERE model_id = ?').run(version, modelId);
    return { manifestSha256, modelId, version, manifest, envelope, report };
  })();
}

function checkReference(ref: z.infer<typeof ReferenceSet>, inputs: IoSpec[]): void {
  const names = new Set(inputs.map((i) => i.name));
  for (const name of Object.keys(ref.inputs)) {
    if (!names.has(name)) throw new AppError('FLEET_ERR_BAD_REFERENCE', `reference.inputs.${name} is not an input of the model (inputs: ${[...names].join(', ')})`, 400);
  }
  for (const name of names) {
    if (!(name in ref.inputs)) throw new AppError('FLEET_ERR_BAD_REFERENCE', `reference.inputs lacks model input ${name}`, 400);
  }
  for (const [name, t] of Object.entries(ref.inputs)) decodeReferenceTensor(name, t);
  const counts = new Set(Object.values(ref.inputs).map((t) => t.dims[0]));
  if (counts.size !== 1) throw new AppError('FLEET_ERR_BAD_REFERENCE', 'reference inputs disagree on the number of samples (first dimension)', 400);
  const n = [...counts][0];
  if (!n) throw new AppError('FLEET_ERR_BAD_REFERENCE', 'reference set is empty', 400);
  if (ref.labels && ref.labels.length !== n) throw new AppError('FLEET_ERR_BAD_REFERENCE', `reference has ${n} samples but ${ref.labels.length} labels`, 400);
}

function gateMetrics(gate: GateResult, given: Record<string, number> = {}): Record<string, number> {
  const m: Record<string, number> = { ...given, quantAgreement: gate.agreement };
  if (gate.floatAccuracy !== null) m.floatAccuracy = gate.floatAccuracy;
  if (gate.quantAccuracy !== null) m.quantAccuracy = gate.quantAccuracy;
  if (gate.accuracyDrop !== null) m.quantAccuracyDrop = gate.accuracyDrop;
  return m;
}
